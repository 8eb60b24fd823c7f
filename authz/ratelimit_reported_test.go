package authz_test

import (
	"context"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
)

// TestRateLimitHeadersDescribeLastOverLimit: when several descriptors of a
// Check are over their limits, the RateLimit and X-RateLimit headers of
// the 429 describe the last of them, the one envoyproxy/ratelimit reports,
// whatever their windows; Retry-After is the longest wait among them.
func TestRateLimitHeadersDescribeLastOverLimit(t *testing.T) {
	const file = `
domain: gateway
descriptors:
  - key: user
    rate_limit: {name: per-user, unit: minute, requests_per_unit: 1}
  - key: route
    rate_limit: {name: per-route, unit: hour, requests_per_unit: 1}
`
	user := authz.RateLimitDescriptor{Actions: []authz.RateLimitAction{{Identity: &authz.IdentityAction{Field: "subject", DescriptorKey: "user"}}}}
	route := authz.RateLimitDescriptor{Actions: []authz.RateLimitAction{{GenericKey: &authz.GenericKeyAction{DescriptorKey: "route", DescriptorValue: "api"}}}}
	tests := []struct {
		name string
		give []authz.RateLimitDescriptor
		want map[string]string
	}{
		{"hour last", []authz.RateLimitDescriptor{user, route}, map[string]string{
			"retry-after": "2775", "ratelimit-policy": `"per-route";q=1;w=3600`, "ratelimit": `"per-route";r=0;t=2775`,
			"x-ratelimit-limit": "1", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2775",
		}},
		{"minute last", []authz.RateLimitDescriptor{route, user}, map[string]string{
			"retry-after": "2775", "ratelimit-policy": `"per-user";q=1;w=60`, "ratelimit": `"per-user";r=0;t=15`,
			"x-ratelimit-limit": "1", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "15",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := envoyconfig.Parse([]envoyconfig.File{{Name: "l.yaml", Content: []byte(file)}})
			if err != nil {
				t.Fatal(err)
			}
			l := ratelimit.New(memory.New(memory.Options{}), rules, ratelimit.Options{
				Now: func() time.Time { return time.Unix(1_700_000_025, 0) }, // 15 s to the minute, 2775 s to the hour
			})
			cfg := testPolicy()
			for i := range cfg.Rules {
				if cfg.Rules[i].Name == "api" {
					cfg.Rules[i].RateLimits = authz.RateLimits{Domain: "gateway", Descriptors: tt.give}
				}
			}
			p, err := authz.NewPipeline(cfg, testAuthenticators(), authz.Options{
				Limiter: l, RateLimitHeaders: ratelimit.HeaderOptions{Draft: true, Legacy: true},
			})
			if err != nil {
				t.Fatal(err)
			}
			api := func() authz.Decision {
				return p.Decide(context.Background(), req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"))
			}
			if d := api(); !d.Allowed() {
				t.Fatalf("first request: %v %s", d.Code, d.Reason)
			}
			d := api()
			if d.Code != authz.RateLimited {
				t.Fatalf("second request: %v %s", d.Code, d.Reason)
			}
			for name, v := range tt.want {
				if got := headerValue(d.ResponseHeaders, name); got != v {
					t.Errorf("%s = %q, want %q", name, got, v)
				}
			}
		})
	}
}
