package extauthz_test

import (
	"context"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// checkInvariants holds for every response, whatever the request.
func checkInvariants(t *testing.T, resp *authv3.CheckResponse) {
	t.Helper()
	if resp == nil || resp.GetStatus() == nil {
		t.Fatal("no status in response")
	}
	if _, err := proto.Marshal(resp); err != nil {
		t.Fatalf("response cannot be sent: %v", err)
	}
	if resp.GetStatus().GetCode() == 0 {
		if resp.GetOkResponse() == nil {
			t.Fatal("OK without ok_response")
		}
		subject := resp.GetDynamicMetadata().GetFields()["subject"].GetStringValue()
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if strings.HasPrefix(h.GetHeader().GetKey(), "x-auth-") && subject == "" {
				t.Fatalf("anonymous allow sets identity header %s", h.GetHeader().GetKey())
			}
		}
		return
	}
	if resp.GetDeniedResponse().GetStatus() == nil {
		t.Fatal("denial without HTTP status")
	}
}

// FuzzCheckRequestBytes feeds arbitrary wire bytes: whatever decodes as a
// CheckRequest must get a well-formed answer, never a panic.
func FuzzCheckRequestBytes(f *testing.F) {
	for _, r := range []*authv3.CheckRequest{
		{},
		extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "a.example.com", Path: "/api/x?y", Headers: [][2]string{{"x-api-key", "k-alice"}}}),
		extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "h", Path: "/healthz"}),
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	srv := extauthz.New(testPipeline(f), extauthz.Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &authv3.CheckRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			return // gRPC rejects these before our handler
		}
		resp, err := srv.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("Check error: %v", err)
		}
		checkInvariants(t, resp)
	})
}

// FuzzCheckHTTP fuzzes the fields a client controls, including invalid
// UTF-8 (Envoy's raw header form carries bytes).
func FuzzCheckHTTP(f *testing.F) {
	f.Add("GET", "api.example.com", "/api/x", "x-api-key", "k-alice")
	f.Add("get", "API.EXAMPLE.COM:443", "/api/../admin/x", "X-Auth-Subject", "root")
	f.Add("", "", "", "", "")
	f.Add("GET", "a.example.com", "/api/%2e%2e/%2F", "authorization", "Bearer \xff\xfe")
	f.Add("POST", "\xff", "/\x00", "cookie", "a=b; ;=;")
	srv := extauthz.New(testPipeline(f), extauthz.Options{})
	f.Fuzz(func(t *testing.T, method, host, path, hname, hvalue string) {
		req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{
			Method: method, Host: host, Path: path, Headers: [][2]string{{hname, hvalue}}, RequestID: hvalue,
		})
		resp, err := srv.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("Check error: %v", err)
		}
		checkInvariants(t, resp)
	})
}
