package authz_test

import (
	"context"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/tokens"
)

// ctxLimiter answers OK unless the request's context has ended, as a
// remote limiter does.
type ctxLimiter struct{}

func (ctxLimiter) Check(ctx context.Context, _ ratelimit.Request) (ratelimit.Result, error) {
	if err := ctx.Err(); err != nil {
		return ratelimit.Result{}, err
	}
	return ratelimit.Result{Code: ratelimit.OK}, nil
}

// TestShadowRuleCannotChangeEnforcedDecision: a shadow rule decides
// nothing, so even one whose authenticator spends the whole request
// deadline (a slow introspection endpoint) must leave the enforced
// decision exactly what it is without the shadow rule.
func TestShadowRuleCannotChangeEnforcedDecision(t *testing.T) {
	shadow := authz.RuleConfig{Name: "trial", Mode: authz.ModeShadow, Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/"}},
		Action: authz.ActionAuthenticate, Authenticators: []string{"slow"}}
	limits := authz.RateLimits{Domain: "d", Descriptors: []authz.RateLimitDescriptor{{Actions: []authz.RateLimitAction{
		{GenericKey: &authz.GenericKeyAction{DescriptorValue: "all"}}}}}}
	tests := []struct {
		name     string
		enforced authz.RuleConfig
		give     *authz.Request
		wantRule string
	}{
		{"authenticate after", authz.RuleConfig{Name: "api", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/api/"}},
			Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}},
			req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice", "x-slow", "s"), "api"},
		{"rate-limited allow after", authz.RuleConfig{Name: "open", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/"}},
			Action: authz.ActionAllow, RateLimits: limits},
			req("GET", "api.example.com", "/pub", "x-slow", "s"), "open"},
		{"rate-limited authenticate after", authz.RuleConfig{Name: "api", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/api/"}},
			Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}, RateLimits: limits},
			req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice", "x-slow", "s"), "api"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slowCalls := 0
			auths := []*authz.Authenticator{
				{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, Verifier: authztest.Credentials{"k-alice": alice}},
				{Name: "slow", Source: authz.CredentialSource{Header: "x-slow"}, Verifier: authz.VerifierFunc(
					func(ctx context.Context, _ string) (tokens.Principal, error) {
						slowCalls++
						// It outlives the request: the deadline passes.
						cancelFrom(ctx)()
						return tokens.Principal{}, ctx.Err()
					})},
			}
			cfg := authz.Config{Realm: "test", Rules: []authz.RuleConfig{shadow, tt.enforced}}
			p, err := authz.NewPipeline(cfg, auths, authz.Options{Limiter: ctxLimiter{}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			d := p.Decide(withCancel(ctx, cancel), tt.give)
			if d.Code != authz.OK || d.Rule != tt.wantRule {
				t.Errorf("enforced decision = %v %q (rule %q), want OK by %q: the shadow rule changed it", d.Code, d.Reason, d.Rule, tt.wantRule)
			}
			if slowCalls != 1 || len(d.Shadow) != 1 || d.Shadow[0].Rule != "trial" || d.Shadow[0].Code != authz.Unavailable {
				t.Errorf("shadow calls %d, decisions %+v; want the trial rule's would-be 503 once", slowCalls, d.Shadow)
			}
		})
	}
}

type cancelKey struct{}

func withCancel(ctx context.Context, cancel context.CancelFunc) context.Context {
	return context.WithValue(ctx, cancelKey{}, cancel)
}

func cancelFrom(ctx context.Context) context.CancelFunc {
	return ctx.Value(cancelKey{}).(context.CancelFunc)
}
