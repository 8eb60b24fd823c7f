package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ext-authz/ext-authz/authz"
)

// explainPath is the server's admin endpoint (internal/server.ExplainPath;
// the command-line tools do not import the server).
const explainPath = "/debug/explain"

// DefaultAdminAddr is the admin address check --explain asks:
// $EXT_AUTHZ_ADMIN_ADDRESS made dialable, else the default port locally.
func DefaultAdminAddr(getenv func(string) string) string {
	a := getenv(EnvAdminAddress)
	if a == "" {
		return "127.0.0.1:8081"
	}
	if host, port, err := net.SplitHostPort(a); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return a
}

// explainBody is the JSON check --explain posts: req as the server's
// ExplainRequest (method, scheme, host, path with query, headers as a
// list, peer, context_extensions, source_principal).
func explainBody(req *authv3.CheckRequest) ([]byte, error) {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	var headers [][2]string
	for k, v := range h.GetHeaders() {
		if strings.HasPrefix(k, ":") || k == "x-request-id" {
			continue
		}
		headers = append(headers, [2]string{k, v})
	}
	sort.Slice(headers, func(i, j int) bool { return headers[i][0] < headers[j][0] })
	return json.Marshal(map[string]any{
		"method":             h.GetMethod(),
		"scheme":             h.GetScheme(),
		"host":               h.GetHost(),
		"path":               h.GetPath(),
		"headers":            headers,
		"peer":               attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
		"context_extensions": attrs.GetContextExtensions(),
		"source_principal":   attrs.GetSource().GetPrincipal(),
	})
}

// remote asks the running server's admin endpoint to explain req.
func (lf *checkLocalFlags) remote(ctx context.Context, req *authv3.CheckRequest, timeout time.Duration) (authz.Explanation, error) {
	body, err := explainBody(req)
	if err != nil {
		return authz.Explanation{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := "http://" + lf.admin + explainPath
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return authz.Explanation{}, &ExitError{Code: ExitFailure, Msg: fmt.Sprintf("check --explain: --admin %q: %v", lf.admin, err)}
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return authz.Explanation{}, &ExitError{Code: ExitFailure, Msg: fmt.Sprintf("check --explain: no answer from the admin endpoint at %s (start the server with admin.explain: true, pass --admin, or explain a config file with --config FILE): %v", lf.admin, err)}
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return authz.Explanation{}, &ExitError{Code: ExitFailure, Msg: fmt.Sprintf("check --explain: reading the answer of %s: %v", u, err)}
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return authz.Explanation{}, &ExitError{Code: ExitFailure, Msg: fmt.Sprintf("check --explain: explain is off on the server at %s: set admin.explain: true (and restart), or use --config FILE", lf.admin)}
	default:
		msg := strings.TrimSpace(string(b))
		if len(msg) > 500 {
			msg = msg[:500] + "..."
		}
		return authz.Explanation{}, &ExitError{Code: ExitFailure, Msg: fmt.Sprintf("check --explain: %s answered %s: %s", u, resp.Status, msg)}
	}
	var out struct {
		Code string
		authz.Explanation
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return authz.Explanation{}, &ExitError{Code: ExitFailure, Msg: fmt.Sprintf("check --explain: %s: the answer is not an explanation: %v", u, err)}
	}
	return out.Explanation, nil
}
