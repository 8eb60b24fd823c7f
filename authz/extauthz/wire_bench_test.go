package extauthz_test

import (
	"context"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/tokens"
)

// benchRequests are the CheckRequests the benchmarks decode: the load
// driver's (loadtest/cmd/authzload: nine headers, a JWT) and one as an
// Istio ingress gateway sends it (23 headers, cookies, tracing).
func benchRequests(b *testing.B) map[string][]byte {
	jwt := "eyJhbGciOiJSUzI1NiIsImtpZCI6ImRldi1yczI1Ni0xIiwidHlwIjoiSldUIn0." + strings.Repeat("eyJzdWIiOiJ1c2VyLTEiLCJpc3MiOiJodHRwczovL2lzc3Vlci", 6) + "." + strings.Repeat("Q", 342)
	load := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "example.com", Path: "/api/items",
		RequestID: "authzload-000001", Headers: [][2]string{{"user-agent", "authzload"}, {"accept", "application/json"},
			{"x-forwarded-proto", "https"}, {"authorization", "Bearer " + jwt}}})
	gateway := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: "/api/orders/1234?expand=items&page=2",
		RequestID: "9b2f6a4e-3c1d-4e8f-a0b7-5d6c7e8f9a0b", PeerAddress: "10.244.1.17",
		Headers: [][2]string{
			{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"},
			{"accept", "application/json, text/plain, */*"}, {"accept-language", "en-GB,en;q=0.9"}, {"accept-encoding", "gzip, deflate, br"},
			{"authorization", "Bearer " + jwt}, {"cookie", "session=abc123; theme=dark; _ga=GA1.2.3.4"},
			{"x-forwarded-for", "203.0.113.7, 10.244.1.17"}, {"x-forwarded-proto", "https"}, {"x-envoy-external-address", "203.0.113.7"},
			{"x-envoy-attempt-count", "1"}, {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			{"x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"}, {"x-b3-spanid", "00f067aa0ba902b7"}, {"x-b3-sampled", "1"},
			{"sec-fetch-mode", "cors"}, {"sec-fetch-site", "same-origin"}, {"referer", "https://shop.example.com/orders"},
			{"origin", "https://shop.example.com"},
		},
		ContextExtensions: map[string]string{"route": "orders"},
	})
	out := map[string][]byte{}
	for name, m := range map[string]*authv3.CheckRequest{"authzload": load, "gateway": gateway} {
		raw, err := proto.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		out[name] = raw
	}
	return out
}

var sinkRequest authz.Request

// BenchmarkDecodeCheckRequest: proto (grpc-go's codec, as the Codec
// calls it, then RequestFromProto) against the lean decoder, same run.
func BenchmarkDecodeCheckRequest(b *testing.B) {
	for name, raw := range benchRequests(b) {
		data := mem.BufferSlice{mem.SliceBuffer(raw)}
		b.Run("req="+name+"/impl=proto", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				var req authv3.CheckRequest
				if err := (extauthz.Codec{}).Unmarshal(data, &req); err != nil {
					b.Fatal(err)
				}
				sinkRequest = extauthz.RequestFromProto(&req)
			}
		})
		b.Run("req="+name+"/impl=lean", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				r, why := extauthz.DecodeCheckRequest(raw)
				if why != "" {
					b.Fatal(why)
				}
				sinkRequest = r
			}
		})
	}
}

// BenchmarkEncodeCheckResponse: grpc-go's codec on Render's message
// against AppendCheckResponse into a reused buffer, same run.
func BenchmarkEncodeCheckResponse(b *testing.B) {
	id := &authz.Identity{Principal: tokens.Principal{Subject: "user-1"}, Authenticator: "jwt"}
	decisions := map[string]authz.Decision{
		"allow-identity": {ID: "3f2a9c1b0d4e-k2", Rule: "api", Identity: id,
			UpstreamHeaders: []authz.Header{{Name: "x-auth-subject", Value: "user-1"}, {Name: "x-auth-issuer", Value: "https://issuer.quickstart.example"},
				{Name: "x-auth-method", Value: "jwt"}, {Name: "x-auth-scopes", Value: "read write"}},
			RemoveHeaders: []string{"x-auth-subject", "x-auth-issuer", "x-auth-method", "x-auth-scopes", "x-auth-claims"}},
		"deny-401": {ID: "3f2a9c1b0d4e-k3", Code: authz.Unauthenticated, Reason: "invalid_credential", Rule: "api",
			Challenges: []string{`Bearer realm="gateway", error="invalid_token"`}},
	}
	for name, d := range decisions {
		b.Run("decision="+name+"/impl=proto", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := (extauthz.Codec{}).Marshal(extauthz.Render(&d, "rid-1"))
				if err != nil {
					b.Fatal(err)
				}
				out.Free()
			}
		})
		b.Run("decision="+name+"/impl=lean", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf = extauthz.AppendCheckResponse(buf[:0], &d, "rid-1")
			}
		})
	}
}

// BenchmarkCheckHandler is the whole Check as the gRPC server runs it
// without the network: the codec's Unmarshal, the service handler (the
// generated one and Server.Check, or the lean one), and the codec's
// Marshal of the answer, freed as grpc-go frees it. The pipeline decides
// an API-key request (cached verification, identity headers).
func BenchmarkCheckHandler(b *testing.B) {
	srv := extauthz.New(testPipeline(b), extauthz.Options{})
	raw, err := proto.Marshal(extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "api.example.com", Path: "/api/orders?page=2",
		RequestID: "9b2f6a4e-3c1d-4e8f-a0b7-5d6c7e8f9a0b",
		Headers: [][2]string{{"x-api-key", "k-alice"}, {"user-agent", "Mozilla/5.0 (X11; Linux x86_64)"}, {"accept", "*/*"},
			{"x-forwarded-for", "203.0.113.7"}, {"x-forwarded-proto", "https"}, {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			{"cookie", "session=abc123; theme=dark"}, {"accept-language", "en"}}}))
	if err != nil {
		b.Fatal(err)
	}
	data := mem.BufferSlice{mem.SliceBuffer(raw)}
	dec := func(v any) error { return (extauthz.Codec{}).Unmarshal(data, v) }
	for _, c := range []struct {
		name    string
		handler grpc.MethodHandler
	}{
		{"impl=proto", authv3.Authorization_ServiceDesc.Methods[0].Handler},
		{"impl=lean", extauthz.LeanServiceDesc.Methods[0].Handler},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				resp, err := c.handler(srv, ctx, dec, nil)
				if err != nil {
					b.Fatal(err)
				}
				out, err := (extauthz.Codec{}).Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				if out.Len() < 100 {
					b.Fatalf("answer of %d bytes", out.Len())
				}
				out.Free()
			}
		})
	}
}
