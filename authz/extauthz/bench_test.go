package extauthz_test

import (
	"context"
	"testing"

	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// BenchmarkCheck measures the whole handler (proto in, proto out) without
// the network.
func BenchmarkCheck(b *testing.B) {
	srv := extauthz.New(testPipeline(b), extauthz.Options{})
	cases := []struct {
		name      string
		give      extauthz.HTTPRequest
		wantAllow bool
	}{
		{"rule=anonymous/result=allow", extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: "/healthz", RequestID: "r"}, true},
		{"rule=none/result=deny", extauthz.HTTPRequest{Method: "GET", Host: "elsewhere.org", Path: "/", RequestID: "r"}, false},
		{"rule=api/result=deny-401", extauthz.HTTPRequest{Method: "GET", Host: "api.example.com", Path: "/api/orders", RequestID: "r"}, false},
		{"rule=api/auth=static/result=allow", extauthz.HTTPRequest{Method: "GET", Host: "api.example.com", Path: "/api/orders?page=2",
			Headers: [][2]string{{"x-api-key", "k-alice"}, {"user-agent", "bench"}, {"accept", "*/*"}}, RequestID: "r"}, true},
	}
	for _, c := range cases {
		req := extauthz.BuildCheckRequest(c.give)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				resp, _ := srv.Check(ctx, req)
				if (resp.GetStatus().GetCode() == 0) != c.wantAllow {
					b.Fatalf("unexpected decision %v", resp.GetStatus())
				}
			}
		})
	}
}
