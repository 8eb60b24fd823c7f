package authz_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/tokens"
)

func planPipeline(t *testing.T, alg ratelimit.Algorithm) *authz.Pipeline {
	t.Helper()
	rc := ratelimit.Config{
		Files: []string{"l.yaml"},
		Plans: map[string]map[string][]string{
			"free": {"api": {"2/minute", "3/hour"}},
			"pro":  {"api": {"5/minute", "1000/hour"}},
		},
		DefaultPlan: "free",
		PlanClaim:   "tier",
		Quotas:      map[string]ratelimit.QuotaConfig{"api": {Claim: "api_per_hour", Unit: "hour", Max: 4}},
	}
	plans, err := rc.CompilePlans()
	if err != nil {
		t.Fatal(err)
	}
	principal := func(sub string, claims map[string]any) tokens.Principal {
		return tokens.Principal{Subject: sub, Claims: claims}
	}
	auths := []*authz.Authenticator{{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, ChallengeScheme: "ApiKey",
		Verifier: authztest.Credentials{
			"k-free":    principal("free-user", nil),
			"k-pro":     principal("pro-user", map[string]any{"tier": "pro"}),
			"k-bogus":   principal("bogus-user", map[string]any{"tier": "platinum"}),
			"k-granted": principal("granted-user", map[string]any{"tier": "pro", "api_per_hour": float64(100)}),
		}}}
	cfg := limitedPolicy(authz.ActionAuthenticate, authz.RateLimits{Domain: "gateway", Descriptors: []authz.RateLimitDescriptor{
		{Actions: []authz.RateLimitAction{{Identity: &authz.IdentityAction{Field: "subject", DescriptorKey: "user"}}}, Plan: "api"},
	}})
	clk := func() time.Time { return time.Unix(1_700_000_025, 0) }
	l := ratelimit.New(memory.New(memory.Options{}), nil, ratelimit.Options{Now: clk, Algorithm: alg})
	p, err := authz.NewPipeline(cfg, auths, authz.Options{
		Limiter: l, RateLimitPlans: plans, RateLimitHeaders: ratelimit.HeaderOptions{Draft: true}, RateLimitHeadersOnAllow: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPlansInCheck: the caller's plan, from a claim, picks the limits of a
// plan descriptor; both windows are counted and named; the plan and the
// effective limit reach the decision.
func TestPlansInCheck(t *testing.T) {
	for _, alg := range []ratelimit.Algorithm{ratelimit.FixedWindow, ratelimit.SlidingWindow, ratelimit.GCRA} {
		t.Run(alg.String(), func(t *testing.T) {
			p := planPipeline(t, alg)
			call := func(key string) authz.Decision {
				return p.Decide(context.Background(), req("GET", "h", "/x", "x-api-key", key))
			}
			// free: 2/minute decides first.
			for i := range 2 {
				if d := call("k-free"); !d.Allowed() || d.Identity.Plan != "free" {
					t.Fatalf("free %d: %v %s plan %q", i+1, d.Code, d.Reason, d.Identity.Plan)
				}
			}
			d := call("k-free")
			if d.Code != authz.RateLimited || d.RateLimitPolicy != `"free/api/minute";q=2;w=60` {
				t.Fatalf("free 3rd: %v, policy %s", d.Code, d.RateLimitPolicy)
			}
			if got := headerValue(d.ResponseHeaders, "ratelimit-policy"); got != `"free/api/minute";q=2;w=60, "free/api/hour";q=3;w=3600` {
				t.Errorf("RateLimit-Policy %q", got)
			}
			if got := headerValue(d.ResponseHeaders, "ratelimit"); !strings.HasPrefix(got, `"free/api/minute";r=0;t=`) {
				t.Errorf("RateLimit %q: must name the policy that denied", got)
			}
			// pro: 5 per minute.
			for i := range 5 {
				d := call("k-pro")
				if !d.Allowed() || d.Identity.Plan != "pro" {
					t.Fatalf("pro %d: %v plan %q", i+1, d.Code, d.Identity.Plan)
				}
				if i == 0 && d.RateLimitPolicy != `"pro/api/minute";q=5;w=60` {
					t.Errorf("pro effective limit %s", d.RateLimitPolicy)
				}
			}
			if d := call("k-pro"); d.Code != authz.RateLimited {
				t.Fatalf("pro 6th: %v", d.Code)
			}
			// An unknown plan gets the default plan.
			if d := call("k-bogus"); d.Identity.Plan != "free" {
				t.Fatalf("unknown plan resolved to %q", d.Identity.Plan)
			}
			// A quota claim replaces the hour window, bounded by max (4).
			var last authz.Decision
			n := 0
			for range 6 {
				if last = call("k-granted"); last.Allowed() {
					n++
				}
			}
			if n != 4 || last.RateLimitPolicy != `"quota/api/hour";q=4;w=3600` {
				t.Fatalf("granted: %d allowed (want the bounded quota, 4), last policy %s", n, last.RateLimitPolicy)
			}
		})
	}
}

func TestPlanNamesChecked(t *testing.T) {
	cfg := limitedPolicy(authz.ActionAuthenticate, authz.RateLimits{Domain: "gateway", Descriptors: []authz.RateLimitDescriptor{
		{Actions: []authz.RateLimitAction{{GenericKey: &authz.GenericKeyAction{DescriptorValue: "x"}}}, Plan: "export"},
	}})
	rc := ratelimit.Config{Plans: map[string]map[string][]string{"free": {"api": {"1/second"}}}, DefaultPlan: "free"}
	plans, err := rc.CompilePlans()
	if err != nil {
		t.Fatal(err)
	}
	l := ratelimit.New(memory.New(memory.Options{}), nil, ratelimit.Options{})
	for _, tt := range []struct {
		plans *ratelimit.Plans
		want  string
	}{
		{plans, `rules[0].rate_limits.descriptors[0].plan: "export" is not a descriptor of rate_limit.plans or rate_limit.quotas ([api])`},
		{nil, `rules[0].rate_limits.descriptors[0].plan: "export": no rate-limit plans or quotas are configured`},
	} {
		_, err := authz.NewPipeline(cfg, testAuthenticators(), authz.Options{Limiter: l, RateLimitPlans: tt.plans})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want %q", err, tt.want)
		}
	}
}
