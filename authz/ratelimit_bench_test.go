package authz_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
)

const benchLimits = `
domain: gateway
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1000000000}
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 1000000000}
`

// BenchmarkDecideRateLimit is the Check path with and without two
// descriptors (per user and per client address): descriptor building, rule
// matching in envoyproxy/ratelimit's config, key encoding and the memory
// store.
func BenchmarkDecideRateLimit(b *testing.B) {
	rules, err := envoyconfig.Parse([]envoyconfig.File{{Name: "b.yaml", Content: []byte(benchLimits)}})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		limits bool
	}{{"limits=none", false}, {"limits=2/store=memory", true}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testPolicy()
			opts := authz.Options{}
			if bc.limits {
				for i := range cfg.Rules {
					if cfg.Rules[i].Name == "api" {
						cfg.Rules[i].RateLimits = authz.RateLimits{Domain: "gateway", Descriptors: []authz.RateLimitDescriptor{
							{Actions: []authz.RateLimitAction{{Identity: &authz.IdentityAction{Field: "subject", DescriptorKey: "user"}}}},
							{Actions: []authz.RateLimitAction{{RemoteAddress: &struct{}{}}}},
						}}
					}
				}
				opts.Limiter = ratelimit.New(memory.New(memory.Options{}), rules, ratelimit.Options{})
				opts.RateLimitHeaders = ratelimit.HeaderOptions{Draft: true, Legacy: true} // on 429 only: the default
			}
			p, err := authz.NewPipeline(cfg, testAuthenticators(), opts)
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]*authz.Request, 256)
			for i := range reqs {
				reqs[i] = req("GET", "api.example.com", "/api/orders", "x-api-key", "k-alice")
				reqs[i].PeerAddress = "192.0.2." + strconv.Itoa(i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := *reqs[i%len(reqs)]
				i++
				d := p.Decide(context.Background(), &r)
				if !d.Allowed() {
					b.Fatalf("%v %s", d.Code, d.Reason)
				}
			}
		})
	}
}
