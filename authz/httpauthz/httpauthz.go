// Package httpauthz adapts authz to Envoy's HTTP external authorization
// service (the ext_authz filter's http_service; Istio's envoyExtAuthzHttp
// extension provider). Envoy sends the check as an HTTP request with the
// original request's method, its path behind the configured path_prefix,
// and the request headers it was told to include; it allows the request
// when the answer is 200, and otherwise sends the answer's status, headers
// and body to the client.
//
//	Envoy ─GET /prefix/path─▶ Handler ─authz.Request─▶ Decider.Decide
//	      ◀─200 + headers / 4xx + body─ render ◀─authz.Decision─
//
// It shares the status table, deny body, series and tracing with the gRPC
// adapter through authz/transport, so both transports answer alike. It is
// proto-free.
//
// What Envoy makes of the answer (ext_authz_http_impl.cc):
//   - 200: allowed. Headers of the answer named by allowed_upstream_headers
//     (Istio headersToUpstreamOnAllow) are set on the upstream request,
//     those named by allowed_client_headers_on_success
//     (headersToDownstreamOnAllow) are added to the client's response, and
//     x-envoy-auth-headers-to-remove (comma-separated names) are removed
//     from the upstream request, whatever the lists say.
//   - any other status below 500: denied; the status, the body and the
//     headers named by allowed_client_headers (headersToDownstreamOnDeny;
//     all of them when the list is empty) go to the client.
//   - 5xx, or no answer: an error; Envoy answers the client with
//     status_on_error (Istio statusOnError, default 403) and drops our body.
//     So Unavailable (503) and an admission refusal reach the client as
//     status_on_error: configure it as 503 to keep "try again" meaning.
package httpauthz

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/transport"
)

// HeadersToRemove is the header of an allow that names, comma-separated,
// the headers Envoy removes from the upstream request.
const HeadersToRemove = "x-envoy-auth-headers-to-remove"

// Admitter is admission control: *admission.Controller implements it.
type Admitter interface {
	Acquire(ctx context.Context) error
	Release()
	Done(ctx context.Context)
}

// Options are the optional parts of a Handler; the zero value works.
type Options struct {
	// Core holds the decision series, the decision log hook and tracing,
	// as for the gRPC adapter.
	Core transport.Options
	// PathPrefix is Envoy's path_prefix (Istio pathPrefix): Envoy sends
	// PathPrefix + the original path, and a request that does not start
	// with it (followed by "/") did not come from that Envoy and is
	// answered 400.
	PathPrefix string
	// Admission, when set, bounds the checks decided and queued at once;
	// a refused check is answered 503, which Envoy turns into its
	// status_on_error.
	Admission Admitter
	// CallDeadline, when positive, bounds one check: the decision's
	// context ends after it, as the gRPC edge's call deadline does.
	CallDeadline time.Duration
	// Logger logs a panic in the handler (without the request). Default:
	// slog.Default().
	Logger *slog.Logger
}

// Handler is the http.Handler Envoy's http_service calls. Every path is a
// check: the listener serves nothing else.
type Handler struct {
	core     *transport.Core
	prefix   string
	admit    Admitter
	deadline time.Duration
	logger   *slog.Logger
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler that asks d.
func New(d transport.Decider, opts Options) *Handler {
	h := &Handler{core: transport.NewCore(d, opts.Core), prefix: opts.PathPrefix, admit: opts.Admission,
		deadline: opts.CallDeadline, logger: opts.Logger}
	if h.logger == nil {
		h.logger = slog.Default()
	}
	return h
}

// checkSpan names the server span of an HTTP check.
const checkSpan = "ext_authz.http/Check"

// ReasonNoPrefix is the reason word of the 400 answering a request whose
// path does not start with the path prefix.
const ReasonNoPrefix = "path_prefix_missing"

// ServeHTTP admits, converts, decides and renders.
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	defer h.recover(w)
	ctx := req.Context()
	if h.deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.deadline)
		defer cancel()
	}
	if h.admit != nil {
		if err := h.admit.Acquire(ctx); err != nil {
			refuse(w, err)
			return
		}
		defer h.admit.Release()
		defer h.admit.Done(ctx)
	}
	r, ok := RequestFromHTTP(req, h.prefix)
	if !ok {
		d := authz.Decision{Code: authz.BadRequest, Reason: ReasonNoPrefix}
		h.core.Refused(ctx, &r, &d)
		Render(w, &d, r.RequestID)
		return
	}
	d := h.core.Decide(ctx, &r, checkSpan)
	Render(w, &d, r.RequestID)
}

// refuse answers a check admission control turned away. Envoy reads any
// 5xx as "the authorization service failed" and answers status_on_error,
// as it does for the gRPC adapter's RESOURCE_EXHAUSTED.
func refuse(w http.ResponseWriter, err error) {
	w.Header().Set("content-type", "text/plain; charset=utf-8")
	w.Header().Set("cache-control", "no-store")
	if errors.Is(err, context.DeadlineExceeded) {
		w.WriteHeader(http.StatusGatewayTimeout)
		_, _ = w.Write([]byte("deadline passed before the check was decided\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte("ext-authz overloaded: try another replica\n"))
}

// recover turns a panic into a 500 (which Envoy answers with
// status_on_error: fail closed) so one bad request cannot kill the process.
// http.ErrAbortHandler is the server's own signal and passes on.
func (h *Handler) recover(w http.ResponseWriter) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler { //nolint:errorlint // the sentinel is compared, as net/http does
		panic(v)
	}
	h.logger.Error("panic in http check handler", "panic", panicText(v), "stack", string(debug.Stack()))
	w.WriteHeader(http.StatusInternalServerError)
}

func panicText(v any) string {
	switch v := v.(type) {
	case error:
		return v.Error()
	case string:
		return v
	}
	return "non-error panic value"
}

// RequestFromHTTP reads a check as Envoy's http_service sends it. It
// returns false when the path is not prefix followed by "/".
//
// The path is the request-target as sent (RequestURI), never Go's decoded
// URL.Path: the pipeline canonicalises the raw bytes itself, as it does the
// gRPC adapter's. Header names are lower-cased and repeated headers joined
// as Envoy joins them. The pseudo-headers the gRPC adapter sees in its
// header map (:method, :path, :authority, :scheme) are filled in the same
// way, so a rule or identity header reading them sees the same values.
//
// What Envoy does not send in this mode is not invented: there are no
// context extensions, and the scheme is x-forwarded-proto's (the gateway
// sets it). The direct peer is the last x-forwarded-for address, which the
// gateway appends when it uses the remote address (Istio's gateways do);
// that header reaches this service only when the provider lists it in
// includeRequestHeadersInCheck, and only the gateway may reach this port,
// exactly as only it may reach the gRPC port (both trust what they are
// sent).
func RequestFromHTTP(req *http.Request, prefix string) (authz.Request, bool) {
	headers := make(map[string]string, len(req.Header)+4)
	for k, vs := range req.Header {
		lk := authz.ASCIILower(k)
		if lk == "content-length" {
			// Envoy sets its own: the length of the check's body, not the
			// client's.
			continue
		}
		if prev, ok := headers[lk]; ok {
			// Two spellings Go did not canonicalise alike: joined like
			// repeats, in sorted order so the result does not depend on
			// map iteration.
			parts := []string{prev, joinValues(lk, vs)}
			slices.Sort(parts)
			headers[lk] = strings.Join(parts, joinSeparator(lk))
			continue
		}
		headers[lk] = joinValues(lk, vs)
	}
	r := authz.Request{
		Method:    req.Method,
		Host:      req.Host,
		Headers:   headers,
		RequestID: headers["x-request-id"],
	}
	// Envoy sends prefix + the original :path, which starts with '/'. The
	// prefix is a string, not a segment: with "/check", "/checkers" is not
	// a check of "ers".
	target, ok := strings.CutPrefix(req.RequestURI, prefix)
	if !ok || !strings.HasPrefix(target, "/") {
		return r, false
	}
	if xfp := headers["x-forwarded-proto"]; xfp == "http" || xfp == "https" {
		r.Scheme = xfp
		headers[":scheme"] = xfp
	}
	headers[":method"], headers[":path"], headers[":authority"] = req.Method, target, req.Host
	path, query, _ := strings.Cut(target, "?")
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query = query[:i]
	}
	r.Path, r.Query = path, query
	if xff := headers["x-forwarded-for"]; xff != "" {
		r.PeerAddress = strings.TrimSpace(xff[strings.LastIndexByte(xff, ',')+1:])
	}
	return r, true
}

func joinValues(name string, vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	return strings.Join(vs, joinSeparator(name))
}

func joinSeparator(name string) string {
	if name == "cookie" {
		return "; "
	}
	return ","
}

// Render writes the decision as Envoy's http_service expects it: an allow
// is a 200 with the upstream headers, the names to remove in
// x-envoy-auth-headers-to-remove, and the client response headers; a
// denial is the decision's status with the shared deny headers and body.
func Render(w http.ResponseWriter, d *authz.Decision, requestID string) {
	h := w.Header()
	if d.Allowed() {
		for _, u := range d.UpstreamHeaders {
			h.Add(u.Name, transport.ValidUTF8(u.Value))
		}
		if len(d.RemoveHeaders) > 0 {
			h.Set(HeadersToRemove, strings.Join(d.RemoveHeaders, ","))
		}
		for _, c := range d.ResponseHeaders {
			h.Add(c.Name, transport.ValidUTF8(c.Value))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	for _, c := range transport.DenyHeaders(d) {
		h.Add(c.Name, transport.ValidUTF8(c.Value))
	}
	w.WriteHeader(transport.HTTPStatus(d.Code))
	_, _ = w.Write([]byte(transport.DenyBody(d, requestID)))
}
