// Package extauthz adapts authz to Envoy's external authorization API
// (envoy.service.auth.v3.Authorization/Check): it converts the CheckRequest
// to an authz.Request, asks the pipeline, and renders the Decision as a
// CheckResponse. It is the only package besides cmd/ that knows Envoy's
// auth protos.
//
//	Envoy ─CheckRequest─▶ Server.Check ─authz.Request─▶ Decider.Decide
//	      ◀─CheckResponse─ render ◀─authz.Decision─
package extauthz

import (
	"context"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/transport"
)

// Decider decides requests; *authz.Pipeline and *authz.Live implement it.
type Decider = transport.Decider

// Options are the optional parts of a Server; the zero value works.
type Options struct {
	// Observe, when set, is called once per Check with the request, the
	// decision and the time Decide took: for metrics and decision logs.
	Observe func(ctx context.Context, r *authz.Request, d *authz.Decision, elapsed time.Duration)
	// Metrics, when set, counts decisions and times them.
	Metrics *Metrics
	// Tracer, when set, starts a server span per Check. Its parent is the
	// gateway's span, extracted by Propagator from the HTTP headers inside
	// the CheckRequest (that is where Envoy forwards traceparent and B3).
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// Server implements authv3.AuthorizationServer.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	core       *transport.Core
	metrics    *Metrics
	unreadable unreadableIDs
	// checkInfo and checkHandler are what the lean Check handler passes
	// to the interceptors (see leanCheckHandler); read-only.
	checkInfo    *grpc.UnaryServerInfo
	checkHandler grpc.UnaryHandler
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// New returns a Server that asks d.
func New(d Decider, opts Options) *Server {
	topts := transport.Options{Observe: opts.Observe, Tracer: opts.Tracer, Propagator: opts.Propagator}
	if opts.Metrics != nil {
		topts.Metrics = opts.Metrics.decisions
	}
	s := &Server{core: transport.NewCore(d, topts), metrics: opts.Metrics}
	s.checkInfo = &grpc.UnaryServerInfo{Server: s, FullMethod: authv3.Authorization_Check_FullMethodName}
	s.checkHandler = func(ctx context.Context, req any) (any, error) {
		return s.checkWire(ctx, req.(*checkCall)), nil
	}
	return s
}

// checkSpan names the server span of a Check.
const checkSpan = "envoy.service.auth.v3.Authorization/Check"

// Check converts, decides and renders. A denial is an ordinary response
// with denied_response set, never a gRPC error: a gRPC error would make
// Envoy answer status_on_error instead of our status and body.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if reason, bad := Unreadable(req); bad {
		return s.refuseUnreadable(ctx, reason), nil
	}
	r := RequestFromProto(req)
	d := s.core.Decide(ctx, &r, checkSpan)
	return Render(&d, r.RequestID), nil
}

// RequestFromProto reads a CheckRequest as Envoy sends it from a gateway.
// It tolerates any missing part: the pipeline denies a request without
// method or path with 400.
func RequestFromProto(req *authv3.CheckRequest) authz.Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := lowerHeaders(h.GetHeaders())
	if hm := h.GetHeaderMap().GetHeaders(); len(headers) == 0 && len(hm) > 0 {
		headers = joinHeaderMap(len(hm), func(i int) (string, string) {
			v := hm[i].GetValue()
			if v == "" && len(hm[i].GetRawValue()) > 0 {
				v = string(hm[i].GetRawValue())
			}
			return hm[i].GetKey(), v
		})
	}
	return newRequest(requestFields{
		id: h.GetId(), method: h.GetMethod(), path: h.GetPath(), host: h.GetHost(), scheme: h.GetScheme(),
		peer:      attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
		principal: attrs.GetSource().GetPrincipal(), certificate: attrs.GetSource().GetCertificate(),
	}, headers, attrs.GetContextExtensions())
}

// requestFields are the CheckRequest's strings an authz.Request is made
// of, as sent (empty when absent).
type requestFields struct {
	id, method, path, host, scheme, peer string
	// principal and certificate are the source peer's (mTLS).
	principal, certificate string
}

// newRequest makes the authz.Request of a CheckRequest's fields, its
// headers (lower-case names, joined) and its context extensions: the one
// place both decoders (RequestFromProto, DecodeCheckRequest) share.
func newRequest(f requestFields, headers, contextExtensions map[string]string) authz.Request {
	pick := func(field, pseudo string) string {
		if field != "" {
			return field
		}
		return headers[pseudo]
	}
	path, query, _ := strings.Cut(pick(f.path, ":path"), "?")
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query = query[:i]
	}
	requestID := f.id
	if requestID == "" {
		requestID = headers["x-request-id"]
	}
	return authz.Request{
		Method:            pick(f.method, ":method"),
		Host:              pick(f.host, ":authority"),
		Path:              path,
		Query:             query,
		Scheme:            pick(f.scheme, ":scheme"),
		Headers:           headers,
		ContextExtensions: contextExtensions,
		PeerAddress:       f.peer,
		RequestID:         requestID,
		SourcePrincipal:   f.principal,
		SourceCertificate: f.certificate,
	}
}

// joinHeaderMap builds the lower-case, comma-joined map from the
// header_map form (sent when encode_raw_headers is on): n headers, the
// i-th's name and value (raw_value when value is empty) from at. Repeated
// names are joined in one builder each: appending to the joined string
// instead copies it once per repeat, and a 1 MiB message of one repeated
// header then costs gigabytes of copying.
//
// n is a size hint only up to maxHeaderHint: repeated names make fewer
// entries than headers, and a client can send half a million of them.
func joinHeaderMap(n int, at func(i int) (name, value string)) map[string]string {
	m := make(map[string]string, min(n, maxHeaderHint))
	var repeated map[string]*strings.Builder
	for i := range n {
		k, v := at(i)
		k = authz.ASCIILower(k)
		prev, ok := m[k]
		if !ok {
			m[k] = v
			continue
		}
		if repeated == nil {
			repeated = map[string]*strings.Builder{}
		}
		b := repeated[k]
		if b == nil {
			b = &strings.Builder{}
			b.WriteString(prev)
			repeated[k] = b
		}
		b.WriteString(joinSeparator(k))
		b.WriteString(v)
	}
	for k, b := range repeated {
		m[k] = b.String()
	}
	return m
}

// maxHeaderHint bounds the size hint of a header map built from a
// list that may repeat names: more than a gateway sends, far less than
// a message of repeats would ask for.
const maxHeaderHint = 256

// lowerHeaders returns the headers map with lower-case names, as
// authz.Request promises. Envoy sends lower-case names, so this is
// normally the map itself; names that differ only in case are joined like
// repeated headers, in sorted order so the result does not depend on map
// iteration. The client chooses the names, so the work stays linear in the
// input: each group of case variants is sorted and joined in one builder
// (appending to the joined string instead copies it once per variant, and
// 21,500 variants of one name in a 1 MiB message then cost seconds of CPU).
func lowerHeaders(h map[string]string) map[string]string {
	upper := false
	for k := range h {
		if hasUpperASCII(k) {
			upper = true
			break
		}
	}
	if !upper {
		return h
	}
	m := make(map[string]string, len(h))
	// variants holds the original names of every lower-case name seen
	// more than once; most requests have none.
	var variants map[string][]string
	for k, v := range h {
		lk := authz.ASCIILower(k)
		if _, dup := m[lk]; !dup {
			m[lk] = v
			if lk != k {
				// Remember the original name, in case a variant follows.
				if variants == nil {
					variants = map[string][]string{}
				}
				variants[lk] = []string{k}
			}
			continue
		}
		if variants == nil {
			variants = map[string][]string{}
		}
		names := variants[lk]
		if len(names) == 0 {
			names = append(names, lk) // the first one was already lower-case
		}
		variants[lk] = append(names, k)
	}
	for lk, names := range variants {
		if len(names) < 2 {
			continue
		}
		slices.Sort(names)
		sep := joinSeparator(lk)
		n := len(sep) * (len(names) - 1)
		for _, k := range names {
			n += len(h[k])
		}
		var b strings.Builder
		b.Grow(n)
		for i, k := range names {
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteString(h[k])
		}
		m[lk] = b.String()
	}
	return m
}

func joinSeparator(name string) string {
	if name == "cookie" {
		return "; "
	}
	return ","
}

func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// grpcStatus is the CheckResponse status of each decision code; the HTTP
// status is transport.HTTPStatus.
var grpcStatus = map[authz.Code]codes.Code{
	authz.OK:              codes.OK,
	authz.Unauthenticated: codes.Unauthenticated,
	authz.Forbidden:       codes.PermissionDenied,
	authz.RateLimited:     codes.ResourceExhausted,
	authz.Unavailable:     codes.Unavailable,
	authz.BadRequest:      codes.InvalidArgument,
}

// HTTPStatus returns the HTTP status a decision code is answered with.
func HTTPStatus(c authz.Code) int { return transport.HTTPStatus(c) }

// Render turns a decision into the CheckResponse Envoy applies.
func Render(d *authz.Decision, requestID string) *authv3.CheckResponse {
	code, ok := grpcStatus[d.Code]
	if !ok {
		code = codes.PermissionDenied
	}
	resp := &authv3.CheckResponse{
		Status:          &status.Status{Code: int32(code)},
		DynamicMetadata: metadata(d),
	}
	if d.Allowed() {
		resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              headerOptions(d.UpstreamHeaders, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			HeadersToRemove:      d.RemoveHeaders,
			ResponseHeadersToAdd: headerOptions(d.ResponseHeaders, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
		}}
		return resp
	}
	resp.Status.Message = d.Reason
	resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(transport.HTTPStatus(d.Code))},
		Headers: headerOptions(transport.DenyHeaders(d), corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
		Body:    transport.DenyBody(d, requestID),
	}}
	return resp
}

func headerOptions(hs []authz.Header, action corev3.HeaderValueOption_HeaderAppendAction) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	// Three allocations for any number of headers rather than two per
	// header: this runs on every Check.
	opts := make([]corev3.HeaderValueOption, len(hs))
	vals := make([]corev3.HeaderValue, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		vals[i].Key, vals[i].Value = h.Name, safe(h.Value)
		opts[i].Header, opts[i].AppendAction = &vals[i], action
		out[i] = &opts[i]
	}
	return out
}

// MaxEchoedRequestID bounds the request id echoed in a denial's body, in
// bytes. Envoy's own ids are 36-byte UUIDs.
const MaxEchoedRequestID = transport.MaxEchoedRequestID

// metadata is what access logs read from
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:...)%.
func metadata(d *authz.Decision) *structpb.Struct {
	fields := [8][2]string{{"decision_id", d.ID}, {"result", d.Code.String()}, {"rule", d.Rule}, {"reason", d.Reason}, {"rate_limit_policy", d.RateLimitPolicy}}
	n := 5
	if d.Identity != nil {
		fields[5] = [2]string{"subject", safe(d.Identity.Subject)}
		fields[6] = [2]string{"authenticator", d.Identity.Authenticator}
		fields[7] = [2]string{"plan", d.Identity.Plan}
		n = 8
	}
	// One allocation for all values and one for all their kinds, rather
	// than two per field as structpb.NewStringValue makes.
	vals := make([]structpb.Value, n)
	kinds := make([]structpb.Value_StringValue, n)
	m := make(map[string]*structpb.Value, n)
	for i, f := range fields[:n] {
		if f[1] == "" && f[0] != "decision_id" {
			continue
		}
		kinds[i].StringValue = f[1]
		vals[i].Kind = &kinds[i]
		m[f[0]] = &vals[i]
	}
	return &structpb.Struct{Fields: m}
}

// safe makes a string valid UTF-8: protobuf refuses to marshal anything
// else, and a value echoed from the request may not be.
func safe(s string) string { return transport.ValidUTF8(s) }
