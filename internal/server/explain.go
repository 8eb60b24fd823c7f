package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
)

const (
	// ExplainPath is the admin endpoint that explains one request against
	// the live pipeline (admin.explain: true; docs/conditions.md).
	ExplainPath = "/debug/explain"
	// explainMaxBody bounds the request body: the server's own header
	// limit (server.http.max_header_bytes) defaults to 64 KiB too.
	explainMaxBody = 64 << 10
	// explainTimeout bounds one explanation (verifying credentials again,
	// asking the limiter).
	explainTimeout = 5 * time.Second
	// explainConcurrency bounds explanations in flight: the admin port has
	// no admission control, and Explain verifies credentials.
	explainConcurrency = 2
)

// ExplainRequest is the body of POST /debug/explain: what `ext-authz
// check` flags can express. Either URL, or Host and Path (with Scheme and
// Query), names the request.
type ExplainRequest struct {
	Method string `json:"method,omitempty"` // default GET
	URL    string `json:"url,omitempty"`
	Scheme string `json:"scheme,omitempty"` // default https
	Host   string `json:"host,omitempty"`
	Path   string `json:"path,omitempty"`
	Query  string `json:"query,omitempty"`
	// Headers is an object {"name": "value"} or a list [["name",
	// "value"], ...] (a list may repeat a name).
	Headers           ExplainHeaders    `json:"headers,omitempty"`
	Peer              string            `json:"peer,omitempty"` // the gateway's direct peer IP
	ContextExtensions map[string]string `json:"context_extensions,omitempty"`
	SourcePrincipal   string            `json:"source_principal,omitempty"`
}

// ExplainHeaders are request headers in order; see ExplainRequest.
type ExplainHeaders [][2]string

// UnmarshalJSON accepts an object of names to values or a list of
// [name, value] pairs.
func (h *ExplainHeaders) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			return errors.New("headers: want an object of strings or a list of [name, value] pairs")
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
		*h = (*h)[:0]
		for _, k := range names {
			*h = append(*h, [2]string{k, m[k]})
		}
		return nil
	}
	var l [][]string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("headers: want an object of strings or a list of [name, value] pairs")
	}
	*h = (*h)[:0]
	for i, kv := range l {
		if len(kv) != 2 {
			return fmt.Errorf("headers[%d]: want [name, value], got %d strings", i, len(kv))
		}
		*h = append(*h, [2]string{kv[0], kv[1]})
	}
	return nil
}

// DecodeExplainRequest reads one ExplainRequest strictly (unknown fields
// and trailing data are errors) and builds the request Envoy would send.
// Its errors never quote a header value or the URL, which may hold a
// credential.
func DecodeExplainRequest(r io.Reader) (extauthz.HTTPRequest, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var er ExplainRequest
	if err := dec.Decode(&er); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return extauthz.HTTPRequest{}, err
		}
		if errors.Is(err, io.EOF) {
			return extauthz.HTTPRequest{}, errors.New("empty body: want a JSON object")
		}
		return extauthz.HTTPRequest{}, errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return extauthz.HTTPRequest{}, err
		}
		return extauthz.HTTPRequest{}, errors.New("trailing data after the JSON object")
	}
	return er.build()
}

func (er *ExplainRequest) build() (extauthz.HTTPRequest, error) {
	hr := extauthz.HTTPRequest{Method: er.Method, Scheme: er.Scheme, Host: er.Host, PeerAddress: er.Peer,
		ContextExtensions: er.ContextExtensions, SourcePrincipal: er.SourcePrincipal}
	if hr.Method == "" {
		hr.Method = "GET"
	}
	if !validToken(hr.Method) {
		return hr, errors.New("method: not an HTTP method token")
	}
	switch {
	case er.URL != "" && (er.Scheme != "" || er.Host != "" || er.Path != "" || er.Query != ""):
		return hr, errors.New("url: give url, or scheme/host/path/query, not both")
	case er.URL != "":
		u, err := url.Parse(er.URL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return hr, errors.New("url: not an absolute http or https URL") // never quoted: it may hold a credential
		}
		hr.Scheme, hr.Host, hr.Path = u.Scheme, u.Host, u.RequestURI()
	default:
		if er.Host == "" {
			return hr, errors.New("host: required (or give url)")
		}
		if er.Scheme != "" && er.Scheme != "http" && er.Scheme != "https" {
			return hr, errors.New("scheme: http or https")
		}
		hr.Path = er.Path
		if hr.Path == "" {
			hr.Path = "/"
		}
		if er.Query != "" {
			hr.Path += "?" + er.Query
		}
	}
	if strings.ContainsAny(hr.Host, " \t\r\n/") || !httpguts.ValidHeaderFieldValue(hr.Host) {
		return hr, errors.New("host: not a host name")
	}
	if !httpguts.ValidHeaderFieldValue(hr.Path) {
		return hr, errors.New("path: contains control characters")
	}
	for i, kv := range er.Headers {
		if !httpguts.ValidHeaderFieldName(kv[0]) {
			return hr, fmt.Errorf("headers[%d]: %q is not a header name (pseudo-headers come from method, url, host, path)", i, kv[0])
		}
		if !httpguts.ValidHeaderFieldValue(kv[1]) {
			return hr, fmt.Errorf("headers[%d] (%s): the value contains control characters", i, kv[0])
		}
	}
	hr.Headers = er.Headers
	if er.Peer != "" {
		if _, err := netip.ParseAddr(er.Peer); err != nil {
			return hr, errors.New("peer: not an IP address")
		}
	}
	return hr, nil
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// ExplainResponse is the answer: the decision's class and the
// explanation, without the verified claims' values and the headers that
// would be sent upstream (the same shape as `check --config --json`).
type ExplainResponse struct {
	Code string
	*authz.Explanation
}

// NewExplainResponse strips what an explanation's Decision carries that
// may be secret (claim values, forwarded identity headers, assertions).
func NewExplainResponse(ex *authz.Explanation) ExplainResponse {
	ex.Decision.Identity, ex.Decision.UpstreamHeaders = nil, nil
	return ExplainResponse{Code: ex.Decision.Code.String(), Explanation: ex}
}

// explainHandler serves POST /debug/explain: one request explained
// against the live pipeline. It is not a Check: it counts in no decision
// series or decision log, and asks the limiter without counting.
func (s *Server) explainHandler() http.HandlerFunc {
	sem := make(chan struct{}, explainConcurrency)
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "explain: method "+strconv.Quote(r.Method)+" not allowed: POST a JSON request", http.StatusMethodNotAllowed)
			return
		}
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "explain: busy, retry", http.StatusServiceUnavailable)
			return
		}
		hr, err := DecodeExplainRequest(http.MaxBytesReader(w, r.Body, explainMaxBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, fmt.Sprintf("explain: body larger than %d bytes", explainMaxBody), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "explain: "+err.Error(), http.StatusBadRequest)
			return
		}
		hr.RequestID = fmt.Sprintf("explain-%d", time.Now().UnixNano())
		req := extauthz.RequestFromProto(extauthz.BuildCheckRequest(hr))
		ctx, cancel := context.WithTimeout(r.Context(), explainTimeout)
		defer cancel()
		ex := s.live.Load().Explain(ctx, &req)
		// Who asked, and the outcome: an audit line without the request.
		s.logger.Info("explain served", "remote", r.RemoteAddr, "rule", ex.Decision.Rule, "result", ex.Decision.Code.String())
		b, err := json.MarshalIndent(NewExplainResponse(&ex), "", "  ")
		if err != nil {
			http.Error(w, "explain: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(append(b, '\n'))
	}
}
