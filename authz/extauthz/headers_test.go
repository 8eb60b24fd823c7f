package extauthz_test

import (
	"maps"
	"runtime"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz/extauthz"
)

func httpRequest(headers map[string]string, headerMap ...*corev3.HeaderValue) *authv3.CheckRequest {
	h := &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: headers}
	if len(headerMap) > 0 {
		h.HeaderMap = &corev3.HeaderMap{Headers: headerMap}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
}

// TestRequestFromProtoHeaderNames: whatever case a CheckRequest uses, the
// authz.Request has lower-case names, and names equal but for case are
// joined as repeated headers are. Only ASCII letters fold, as in Envoy.
func TestRequestFromProtoHeaderNames(t *testing.T) {
	tests := []struct {
		name string
		give *authv3.CheckRequest
		want map[string]string
	}{
		{name: "lower case kept", give: httpRequest(map[string]string{"x-api-key": "k", "cookie": "a=1"}),
			want: map[string]string{"x-api-key": "k", "cookie": "a=1"}},
		{name: "mixed case lowered", give: httpRequest(map[string]string{"X-Api-Key": "k"}),
			want: map[string]string{"x-api-key": "k"}},
		{name: "case collisions joined in sorted name order", give: httpRequest(map[string]string{"x-auth-subject": "a", "X-Auth-Subject": "b", "X-AUTH-SUBJECT": "c"}),
			want: map[string]string{"x-auth-subject": "c,b,a"}},
		{name: "cookie collisions joined with semicolons", give: httpRequest(map[string]string{"Cookie": "a=1", "cookie": "b=2"}),
			want: map[string]string{"cookie": "a=1; b=2"}},
		{name: "kelvin sign is not k", give: httpRequest(map[string]string{"X-Api-\u212Aey": "k"}),
			want: map[string]string{"x-api-\u212Aey": "k"}},
		{name: "header_map lowered and joined", give: httpRequest(nil,
			&corev3.HeaderValue{Key: "X-Auth-Subject", Value: "a"},
			&corev3.HeaderValue{Key: "x-auth-subject", RawValue: []byte("b")},
			&corev3.HeaderValue{Key: "x-AUTH-subject", Value: "c,d"},
			&corev3.HeaderValue{Key: "Cookie", Value: "a=1"},
			&corev3.HeaderValue{Key: "cookie", Value: "b=2"}),
			want: map[string]string{"x-auth-subject": "a,b,c,d", "cookie": "a=1; b=2"}},
		{name: "headers win over header_map", give: httpRequest(map[string]string{"x-a": "1"}, &corev3.HeaderValue{Key: "x-b", Value: "2"}),
			want: map[string]string{"x-a": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := extauthz.RequestFromProto(tt.give).Headers
			if !maps.Equal(got, tt.want) {
				t.Errorf("headers = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRequestFromProtoRepeatedHeaderIsLinear: 100,000 header_map entries of
// one name (what fits a 1 MiB message) are joined with a few MiB of
// allocation. Appending to the joined string copied it per entry: ~20 GB.
func TestRequestFromProtoRepeatedHeaderIsLinear(t *testing.T) {
	const n = 100_000
	hs := make([]*corev3.HeaderValue, n)
	for i := range hs {
		hs[i] = &corev3.HeaderValue{Key: "X-Repeated", Value: "v"}
	}
	req := httpRequest(nil, hs...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := extauthz.RequestFromProto(req)
	runtime.ReadMemStats(&after)
	if want := strings.Repeat("v,", n-1) + "v"; r.Headers["x-repeated"] != want {
		t.Fatalf("joined value has %d bytes, want %d", len(r.Headers["x-repeated"]), len(want))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("joining %d repeats allocated %d MiB", n, alloc>>20)
	}
}

// BenchmarkRequestFromProto: the lower-case check costs one scan of the
// names on Envoy's (already lower-case) requests; mixed case copies.
func BenchmarkRequestFromProto(b *testing.B) {
	envoy := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: "/api/orders?page=1",
		Headers:   [][2]string{{"x-api-key", "k"}, {"user-agent", "k6"}, {"accept", "*/*"}, {"x-forwarded-for", "10.0.0.1"}, {"x-forwarded-proto", "https"}, {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
		RequestID: "rid"})
	mixed := proto.Clone(envoy).(*authv3.CheckRequest)
	mixed.Attributes.Request.Http.Headers["X-Api-Key"] = "k"
	delete(mixed.Attributes.Request.Http.Headers, "x-api-key")
	for _, bc := range []struct {
		name string
		req  *authv3.CheckRequest
	}{{"names=lower", envoy}, {"names=mixed", mixed}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := extauthz.RequestFromProto(bc.req); r.Headers["x-api-key"] != "k" {
					b.Fatal("credential header lost")
				}
			}
		})
	}
	// What the lower-case check adds on Envoy's requests: the same scan,
	// alone.
	b.Run("names=lower/scan-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			upper := false
			for k := range envoy.GetAttributes().GetRequest().GetHttp().GetHeaders() {
				for i := 0; i < len(k); i++ {
					if 'A' <= k[i] && k[i] <= 'Z' {
						upper = true
					}
				}
			}
			if upper {
				b.Fatal("upper case in Envoy's names")
			}
		}
	})
}
