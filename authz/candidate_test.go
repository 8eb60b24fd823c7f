package authz_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/tokens"
)

// countingVerifier counts verifications.
type countingVerifier struct {
	n *atomic.Int64
	v authz.Verifier
}

func (c countingVerifier) Verify(ctx context.Context, cred string) (tokens.Principal, error) {
	c.n.Add(1)
	return c.v.Verify(ctx, cred)
}

// countingLimiter counts the requests it is asked about; over limit for
// subject "root".
type countingLimiter struct{ n atomic.Int64 }

func (c *countingLimiter) Check(_ context.Context, req ratelimit.Request) (ratelimit.Result, error) {
	c.n.Add(1)
	for _, d := range req.Descriptors {
		if slices.Contains(d.Entries, ratelimit.Entry{Key: "user", Value: "root"}) {
			return ratelimit.Result{Code: ratelimit.OverLimit}, nil
		}
	}
	return ratelimit.Result{Code: ratelimit.OK}, nil
}

func userLimits(key string) authz.RateLimits {
	return authz.RateLimits{Domain: "d", Descriptors: []authz.RateLimitDescriptor{{Actions: []authz.RateLimitAction{
		{Identity: &authz.IdentityAction{Field: "subject", DescriptorKey: key}}}}}}
}

func TestCandidateCompare(t *testing.T) {
	live := testPolicy()
	live.Rules[4].RateLimits = userLimits("user") // api
	stricter := testPolicy()
	stricter.Rules[4].RateLimits = userLimits("user")
	stricter.Rules[4].Require.Scopes = []string{"admin"} // api needs admin
	otherKey := testPolicy()
	otherKey.Rules[4].RateLimits = userLimits("caller")
	renamed := testPolicy()
	renamed.Rules[4].RateLimits = userLimits("user")
	renamed.Rules[4].Name = "api-v2"
	noTeam := testPolicy()
	noTeam.Rules[4].RateLimits = userLimits("user")
	noTeam.IdentityHeaders.Claims = map[string]string{"groups": "x-auth-groups"}
	opened := testPolicy()
	opened.Rules[4].RateLimits = userLimits("user")
	opened.Rules = slices.Insert(opened.Rules, 1, authz.RuleConfig{Name: "internal-open",
		Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/internal/"}}, Action: authz.ActionAllow})

	tests := []struct {
		name        string
		cand        authz.Config
		give        *authz.Request
		wantCode    authz.Code // live, enforced
		wantCand    authz.Code
		wantCRule   string
		wantDiffers []string
		// verifications of the keys authenticator in all: the candidate
		// reuses the live outcome.
		wantVerify int64
	}{
		{"same policy agrees", live, req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"), authz.OK, authz.OK, "api", nil, 1},
		{"stricter candidate refuses", stricter, req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"), authz.OK, authz.Forbidden, "api", []string{"result", "reason"}, 1},
		{"rejected credential reused", stricter, req("GET", "api.example.com", "/api/x", "x-api-key", "k-nobody"), authz.Unauthenticated, authz.Unauthenticated, "api", nil, 1},
		{"other descriptors", otherKey, req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"), authz.OK, authz.OK, "api", []string{"rate_limits"}, 1},
		{"renamed rule agrees", renamed, req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"), authz.OK, authz.OK, "api-v2", nil, 1},
		{"identity headers differ", noTeam, req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"), authz.OK, authz.OK, "api", []string{"rule_headers"}, 1},
		{"live rate limited compares as allowed", live, req("GET", "api.example.com", "/api/x", "x-api-key", "k-root"), authz.RateLimited, authz.OK, "api", nil, 1},
		{"unknown key: both refuse, verified once", stricter, req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice-nope"), authz.Unauthenticated, authz.Unauthenticated, "api", nil, 1},
		{"candidate opens a denied path", opened, req("GET", "x.example.com", "/internal/x"), authz.Forbidden, authz.OK, "internal-open", []string{"result", "reason"}, 0},
		{"no rule in either", stricter, req("GET", "nowhere.test", "/x"), authz.Forbidden, authz.Forbidden, "", nil, 0},
		{"bad request in both", stricter, req("GET", "api.example.com", "/api/a%2Fb"), authz.BadRequest, authz.BadRequest, "", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var verifies atomic.Int64
			auths := testAuthenticators()
			auths[0].Verifier = countingVerifier{&verifies, auths[0].Verifier}
			lim := &countingLimiter{}
			opts := authz.Options{NewID: authztest.SequentialIDs(), Limiter: lim}
			lp, err := authz.NewPipeline(live, auths, opts)
			if err != nil {
				t.Fatal(err)
			}
			c, err := authz.NewCandidate(lp, live, tt.cand, opts)
			if err != nil {
				t.Fatal(err)
			}
			d, cmp := c.Compare(context.Background(), tt.give)
			if d.Code != tt.wantCode || cmp.Candidate.Code != tt.wantCand || cmp.Candidate.Rule != tt.wantCRule {
				t.Fatalf("live %v (%s), candidate %v (%s, rule %q); want %v, %v rule %q",
					d.Code, d.Reason, cmp.Candidate.Code, cmp.Candidate.Reason, cmp.Candidate.Rule, tt.wantCode, tt.wantCand, tt.wantCRule)
			}
			if !slices.Equal(cmp.Differs, tt.wantDiffers) || cmp.Agree() != (len(tt.wantDiffers) == 0) {
				t.Errorf("differs %v, want %v", cmp.Differs, tt.wantDiffers)
			}
			if got := verifies.Load(); got != tt.wantVerify {
				t.Errorf("%d verifications, want %d", got, tt.wantVerify)
			}
			if n := lim.n.Load(); n > 1 {
				t.Errorf("limiter asked %d times: the candidate counted", n)
			}
			if d.ID == "" || cmp.Candidate.ID != "" {
				t.Errorf("ids %q, %q: the live decision has one, the candidate's none", d.ID, cmp.Candidate.ID)
			}
		})
	}
}

// TestCandidateOtherAuthenticator: a candidate rule whose authenticator the
// live rule did not use verifies the credential itself.
func TestCandidateOtherAuthenticator(t *testing.T) {
	var keys, bearer atomic.Int64
	auths := testAuthenticators()
	auths[0].Verifier = countingVerifier{&keys, auths[0].Verifier}
	auths[1].Verifier = countingVerifier{&bearer, auths[1].Verifier}
	lp, err := authz.NewPipeline(testPolicy(), auths, authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cand := testPolicy()
	cand.Rules[2].Authenticators = []string{"bearer"} // admin by bearer token
	c, err := authz.NewCandidate(lp, testPolicy(), cand, authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, cmp := c.Compare(context.Background(), req("GET", "a.example.com", "/admin/x", "x-api-key", "k-root", "authorization", "Bearer t-bob"))
	if d.Code != authz.OK || cmp.Candidate.Code != authz.Forbidden || cmp.Candidate.Subject() != "bob" {
		t.Fatalf("live %v, candidate %v (%s) as %q", d.Code, cmp.Candidate.Code, cmp.Candidate.Reason, cmp.Candidate.Subject())
	}
	if keys.Load() != 1 || bearer.Load() != 1 {
		t.Errorf("verifications: keys %d, bearer %d; want 1 each", keys.Load(), bearer.Load())
	}
	// Not compared: the live pipeline alone, verifying once.
	if d := c.Live().Decide(context.Background(), req("GET", "a.example.com", "/admin/x", "x-api-key", "k-root")); d.Code != authz.OK || keys.Load() != 2 {
		t.Errorf("live alone: %v, %d verifications", d.Code, keys.Load())
	}
}

func TestCandidateErrors(t *testing.T) {
	lp, err := authz.NewPipeline(testPolicy(), testAuthenticators(), authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	unknown := testPolicy()
	unknown.Rules[4].Authenticators = []string{"nope"}
	limited := testPolicy()
	limited.Rules[4].RateLimits = userLimits("user")
	for _, tt := range []struct {
		name string
		give authz.Config
		want string
	}{
		{"unknown authenticator", unknown, `rules[4].authenticators[0]`},
		{"limits without a limiter", limited, "rules: rules have rate_limits but no rate limiter"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := authz.NewCandidate(lp, testPolicy(), tt.give, authz.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestCandidateTwinShortcut: Compare's shortcut for a candidate rule
// identical to the live one gives what deciding the request under the
// candidate gives, over candidates that keep, rename, reorder, shadow or
// change rules, and requests of every outcome.
func TestCandidateTwinShortcut(t *testing.T) {
	live := testPolicy()
	live.Rules[4].RateLimits = userLimits("user")
	variants := map[string]func(c *authz.Config){
		"same":    func(*authz.Config) {},
		"renamed": func(c *authz.Config) { c.Rules[4].Name = "api-v2"; c.Rules[2].Name = "admins" },
		"reordered": func(c *authz.Config) {
			c.Rules[2], c.Rules[4] = c.Rules[4], c.Rules[2]
		},
		"shadowing rule first": func(c *authz.Config) {
			c.Rules = slices.Insert(c.Rules, 0, authz.RuleConfig{Name: "all-api", Action: authz.ActionDeny,
				Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/api/"}}})
		},
		"case-folding collision": func(c *authz.Config) {
			c.Rules = slices.Insert(c.Rules, 0, authz.RuleConfig{Name: "upper", Action: authz.ActionAllow,
				Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/API/"}}})
		},
		"other identity headers": func(c *authz.Config) { c.IdentityHeaders.Claims = nil },
		"stricter":               func(c *authz.Config) { c.Rules[4].Require.Scopes = []string{"admin"} },
		"other limits":           func(c *authz.Config) { c.Rules[4].RateLimits = userLimits("caller") },
		"method override":        func(c *authz.Config) { c.MethodOverride = authz.MethodOverrideReject },
	}
	requests := []func() *authz.Request{
		func() *authz.Request { return req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice") },
		func() *authz.Request { return req("GET", "api.example.com", "/api/x", "x-api-key", "k-root") },
		func() *authz.Request { return req("GET", "api.example.com", "/api/x", "x-api-key", "bad") },
		func() *authz.Request { return req("GET", "api.example.com", "/api/x") },
		func() *authz.Request { return req("GET", "api.example.com", "/Api/x", "x-api-key", "k-alice") },
		func() *authz.Request {
			return req("POST", "api.example.com", "/api/x", "x-api-key", "k-alice", "x-http-method-override", "DELETE")
		},
		func() *authz.Request { return req("GET", "a.example.com", "/admin/x", "x-api-key", "k-root") },
		func() *authz.Request { return req("GET", "a.example.com", "/admin/x", "x-api-key", "k-alice") },
		func() *authz.Request { return req("GET", "a.example.com", "/internal/x") },
		func() *authz.Request { return req("GET", "a.example.com", "/healthz") },
		func() *authz.Request {
			return req("GET", "api.example.com", "/api/x", "cookie", "session=s-bob", "x-auth-subject", "forged")
		},
	}
	for name, change := range variants {
		cand := testPolicy()
		cand.Rules[4].RateLimits = userLimits("user")
		change(&cand)
		lp, err := authz.NewPipeline(live, testAuthenticators(), authz.Options{Limiter: &countingLimiter{}})
		if err != nil {
			t.Fatal(err)
		}
		c, err := authz.NewCandidate(lp, live, cand, authz.Options{Limiter: &countingLimiter{}})
		if err != nil {
			t.Fatal(err)
		}
		full := c.WithoutTwins()
		for i, mk := range requests {
			d1, got := c.Compare(context.Background(), mk())
			d2, want := full.Compare(context.Background(), mk())
			g, w := got.Candidate, want.Candidate
			if d1.Code != d2.Code || d1.Reason != d2.Reason || d1.Rule != d2.Rule {
				t.Fatalf("%s, request %d: live decisions differ", name, i)
			}
			if g.Code != w.Code || g.Reason != w.Reason || g.Rule != w.Rule || g.Subject() != w.Subject() ||
				!slices.Equal(got.Differs, want.Differs) || !sameRequest(got.CandidateLimits, want.CandidateLimits) ||
				(w.Code == authz.OK && d1.Code == authz.OK && (!slices.Equal(g.UpstreamHeaders, w.UpstreamHeaders) || !slices.Equal(g.RemoveHeaders, w.RemoveHeaders))) {
				t.Errorf("%s, request %d: shortcut %v %q %q %v, deciding %v %q %q %v", name, i,
					g.Code, g.Reason, g.Rule, got.Differs, w.Code, w.Reason, w.Rule, want.Differs)
			}
		}
	}
}

func sameRequest(a, b ratelimit.Request) bool {
	return a.Domain == b.Domain && slices.EqualFunc(a.Descriptors, b.Descriptors, func(x, y ratelimit.Descriptor) bool {
		return slices.Equal(x.Entries, y.Entries)
	})
}
