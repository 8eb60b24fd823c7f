package httpauthz_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/authz/httpauthz"
)

// rawAnswer writes raw to addr as one HTTP/1.1 exchange and reads the
// answer as the gateway would use it.
func rawAnswer(t *testing.T, addr, raw string) answer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Body: string(body)}
	for k, vs := range resp.Header {
		lk := strings.ToLower(k)
		switch lk {
		case "date", "content-length":
			continue
		case httpauthz.HeadersToRemove:
			for _, v := range vs {
				for n := range strings.SplitSeq(v, ",") {
					a.Remove = append(a.Remove, strings.TrimSpace(n))
				}
			}
			continue
		}
		for _, v := range vs {
			a.Headers = append(a.Headers, lk+": "+v)
		}
	}
	slices.Sort(a.Headers)
	return a
}

// TestForgedRequestsDecideAsGRPC: request targets and header spellings an
// attacker can bring through a gateway (or, reaching the port directly,
// write raw) get the same answer over HTTP as the same request over gRPC;
// a target that is not path_prefix + "/" never reaches a rule.
func TestForgedRequestsDecideAsGRPC(t *testing.T) {
	grpcAddr := startGRPC(t)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := authv3.NewAuthorizationClient(conn)
	hs := httptest.NewServer(httpauthz.New(testPipeline(t), httpauthz.Options{PathPrefix: pathPrefix}))
	defer hs.Close()
	addr := hs.Listener.Addr().String()

	const host = "shop.example.com"
	tests := []struct {
		name    string
		target  string      // the original :path, sent behind the prefix
		headers [][2]string // in order, spelled as sent
		// status is what both answer: the cases reach every outcome.
		status int
	}{
		{name: "dot segments to admin", target: "/../admin/users", headers: [][2]string{{"x-api-key", "k-alice"}}, status: 403},
		{name: "api then dots to admin", target: "/api/../admin/users", headers: [][2]string{{"x-api-key", "k-alice"}}, status: 403},
		{name: "encoded dots", target: "/api/%2e%2e/admin/users", headers: [][2]string{{"x-api-key", "k-alice"}}, status: 403},
		{name: "encoded slash", target: "/api%2F..%2Fadmin/users", headers: [][2]string{{"x-api-key", "k-alice"}}, status: 400},
		{name: "double slash", target: "//admin/users", headers: [][2]string{{"x-api-key", "k-alice"}}, status: 403},
		{name: "backslash", target: "/api/..\\admin/users", headers: [][2]string{{"x-api-key", "k-alice"}}, status: 400},
		{name: "upper-case admin", target: "/ADMIN/users", headers: [][2]string{{"x-api-key", "k-alice"}}, status: 400},
		{name: "identity spellings", target: "/api/orders", headers: [][2]string{{"x-api-key", "k-alice"},
			{"X_Auth_Subject", "root"}, {"x_auth_team", "ops"}, {"X-AUTH-SUBJECT", "root"}}, status: 200},
		{name: "credential spellings", target: "/api/orders", headers: [][2]string{{"x-api-key", "k-alice"}, {"X_Api_Key", "k-other"}}, status: 401},
		{name: "two keys", target: "/api/orders", headers: [][2]string{{"x-api-key", "k-alice"}, {"X-Api-Key", "k-alice"}}, status: 401},
		{name: "method override", target: "/api/orders", headers: [][2]string{{"x-api-key", "k-alice"}, {"X-HTTP-Method-Override", "DELETE"}}, status: 200},
		{name: "target override", target: "/api/orders", headers: [][2]string{{"x-api-key", "k-alice"}, {"x_original_url", "/admin/users"}}, status: 200},
		{name: "query with hash", target: "/api/orders?a=1#/admin/", headers: [][2]string{{"x-api-key", "k-alice"}}, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// gRPC: Envoy's map, names lower-cased, repeats joined.
			var hs [][2]string
			for _, kv := range tt.headers {
				hs = append(hs, [2]string{strings.ToLower(kv[0]), kv[1]})
			}
			greq := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: host, Path: tt.target, Headers: hs})
			gresp, err := client.Check(context.Background(), greq)
			if err != nil {
				t.Fatal(err)
			}
			want := fromCheckResponse(gresp)
			var b strings.Builder
			b.WriteString("GET " + pathPrefix + tt.target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n")
			for _, kv := range tt.headers {
				b.WriteString(kv[0] + ": " + kv[1] + "\r\n")
			}
			b.WriteString("\r\n")
			got := rawAnswer(t, addr, b.String())
			if !equalAnswers(got, want) {
				t.Errorf("transports disagree\nhttp: %+v\ngrpc: %+v", got, want)
			}
			if got.Status != tt.status {
				t.Errorf("status %d, want %d", got.Status, tt.status)
			}
		})
	}

	// Targets that are not path_prefix + "/": Envoy never sends them, and
	// none may reach a rule (the admin rule would answer 401/403, the
	// api rule 200).
	for _, target := range []string{
		"/" + pathPrefix + "/api/orders",                  // //prefix
		strings.TrimSuffix(pathPrefix, "z") + "%7A/api/x", // prefix with an encoded letter
		pathPrefix + "%2Fapi/orders",                      // encoded slash after the prefix
		pathPrefix + "api/orders",                         // prefix as a string, not a segment
		pathPrefix + "?/api/orders",                       // query right after the prefix
		"http://" + host + pathPrefix + "/api/orders",     // absolute form
		"*",
	} {
		t.Run("target "+target, func(t *testing.T) {
			got := rawAnswer(t, addr, "GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\nx-api-key: k-alice\r\nConnection: close\r\n\r\n")
			if got.Status != http.StatusBadRequest {
				t.Errorf("status %d, want 400: %+v", got.Status, got)
			}
		})
	}

	// Requests Go's server refuses before the handler: 400, which Envoy
	// passes to the client as a denial; none is decided.
	for name, raw := range map[string]string{
		"two hosts":      "GET " + pathPrefix + "/api/orders HTTP/1.1\r\nHost: " + host + "\r\nHost: evil.example.com\r\nx-api-key: k-alice\r\n\r\n",
		"NUL in a value": "GET " + pathPrefix + "/api/orders HTTP/1.1\r\nHost: " + host + "\r\nx-api-key: k-alice\x00\r\n\r\n",
		"two lengths":    "GET " + pathPrefix + "/api/orders HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 0\r\nContent-Length: 5\r\nx-api-key: k-alice\r\n\r\n",
		"space in name":  "GET " + pathPrefix + "/api/orders HTTP/1.1\r\nHost: " + host + "\r\nx-api-key : k-alice\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			if got := rawAnswer(t, addr, raw); got.Status != http.StatusBadRequest {
				t.Errorf("status %d, want 400: %+v", got.Status, got)
			}
		})
	}
}
