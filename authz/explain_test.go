package authz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/tokens"
)

func explainPipeline(t *testing.T, keep bool) *authz.Pipeline {
	t.Helper()
	cfg := authz.Config{Rules: []authz.RuleConfig{
		{Name: "health", Match: authz.MatchConfig{Path: authz.PathMatch{Exact: "/healthz"}}, Action: authz.ActionAllow},
		{Name: "office", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/api/"}, ClientCIDRs: []string{"203.0.113.0/24"}}, Action: authz.ActionAllow},
		{Name: "beta", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/api/"}, When: []string{"'x-beta' in request.headers && request.headers['x-beta'] == 'on'"}}, Action: authz.ActionAllow},
		{Name: "trial", Mode: authz.ModeShadow, Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/api/"}}, Action: authz.ActionDeny},
		{Name: "api", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/api/"}, Methods: []string{"GET"}}, Action: authz.ActionAuthenticate,
			Authenticators: []string{"bearer", "keys"}, Require: authz.Requirements{Scopes: []string{"read"}},
			When: []string{"principal.claims.team == request.headers['x-team']", "ip(principal.claims.team) == ip('10.0.0.1')"},
			RateLimits: authz.RateLimits{Domain: "gateway", Descriptors: []authz.RateLimitDescriptor{
				{Actions: []authz.RateLimitAction{{Identity: &authz.IdentityAction{Field: "subject", DescriptorKey: "user"}}}},
				{Actions: []authz.RateLimitAction{{RequestHeaders: &authz.RequestHeadersAction{HeaderName: "x-api-key", DescriptorKey: "key"}}}},
			}}},
	}}
	keys := authztest.Credentials{"k-secret-alice": {Subject: "alice", Issuer: "keys", Method: tokens.MethodAPIKey, Scopes: []string{"read"},
		Claims: map[string]any{"team": "payments", "email": "alice@example.com"}}}
	auths := []*authz.Authenticator{
		{Name: "bearer", Source: authz.CredentialSource{Authorization: "Bearer"}, Verifier: authztest.Credentials{}},
		{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, Verifier: keys},
	}
	p, err := authz.NewPipeline(cfg, auths, authz.Options{Explain: keep, Limiter: realLimiter(t)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExplain(t *testing.T) {
	p := explainPipeline(t, true)
	r := req("GET", "api.example.com", "/api/orders", "x-api-key", "k-secret-alice", "x-team", "payments")
	r.PeerAddress = "192.0.2.7"
	ex := p.Explain(context.Background(), r)
	out := ex.String()
	for _, want := range []string{
		"request: GET api.example.com /api/orders (client address 192.0.2.7)",
		"[0] health: no match (path)",
		"[1] office: no match (client_cidrs)",
		"[2] beta: no match (match.when[0])",
		"match.when[0] 'x-beta' in request.headers && request.headers['x-beta'] == 'on': false",
		"[3] trial (shadow): matched; would decide forbidden denied_by_rule; matching continues",
		"[4] api: matched",
		"authenticator bearer: credential absent, missing_credential",
		"authenticator keys: credential present, accepted",
		`identity: subject "alice" issuer "keys" via keys (api-key); scopes [read]; claims [email team] (values not shown)`,
		"requirement require.scopes read: true",
		"requirement when[0] principal.claims.team == request.headers['x-team']: true [reads principal.claims, request.headers]",
		"requirement when[1] ip(principal.claims.team) == ip('10.0.0.1'): error (IP Address \"…\" parse error",
		"rate-limit descriptor: user=alice",
		"rate-limit descriptor: key=[credential]",
		"shadow trial would decide: forbidden denied_by_rule",
		"decision: forbidden condition_error (rule api)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explanation lacks %q:\n%s", want, out)
		}
	}
	for _, never := range []string{"k-secret-alice", "alice@example.com", "payments"} {
		if strings.Contains(out, never) {
			t.Errorf("explanation shows %q:\n%s", never, out)
		}
	}
	r.Headers["x-beta"] = "maybe"
	r.Headers["x-beta"] = "on"
	if ex.Decision.Rule != "api" || r.Path != "/api/orders" {
		t.Fatalf("decision %+v; request modified: %q", ex.Decision, r.Path)
	}
	if len(ex.Rules) != 5 || !ex.RulesTried {
		t.Fatalf("%d rules traced, want 5", len(ex.Rules))
	}
}

// TestExplainNeverPrintsCredentials: a credential placed where a condition
// error would echo it is replaced.
func TestExplainNeverPrintsCredentials(t *testing.T) {
	cfg := authz.Config{Rules: []authz.RuleConfig{{Name: "r", Action: authz.ActionAllow,
		When: []string{"ip(request.headers['authorization']) == ip('10.0.0.1')"}}}}
	p, err := authz.NewPipeline(cfg, nil, authz.Options{Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	ex := p.Explain(context.Background(), req("GET", "h", "/", "authorization", "Bearer sekrit-token"))
	if out := ex.String(); strings.Contains(out, "sekrit") || !strings.Contains(out, "error") {
		t.Fatalf("explanation:\n%s", out)
	}
}

func TestExplainWithoutMatchers(t *testing.T) {
	p := explainPipeline(t, false)
	ex := p.Explain(context.Background(), req("GET", "h", "/healthz"))
	if ex.RulesTried || len(ex.Rules) != 1 || ex.Rules[0].Name != "health" || !strings.Contains(ex.String(), "only the deciding rule") {
		t.Fatalf("%+v\n%s", ex.Rules, ex.String())
	}
	ex = p.Explain(context.Background(), req("GET", "h", "/%2e%2e/x%00"))
	if ex.Refused == "" || !strings.Contains(ex.String(), "refused before matching") {
		t.Fatalf("%+v", ex)
	}
}
