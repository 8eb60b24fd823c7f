package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/tokens"
	"github.com/ext-authz/ext-authz/tokens/assertion"
)

const assertionHeader = "x-ext-authz-assertion"

func assertionPipeline(t testing.TB, asserter authz.Asserter) *authz.Pipeline {
	t.Helper()
	cfg := testPolicy()
	cfg.Rules = append(cfg.Rules,
		authz.RuleConfig{Name: "orders", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/orders/"}},
			Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}, AssertionAudience: "orders-svc"},
		authz.RuleConfig{Name: "legacy", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/legacy/"}},
			Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}, AssertionAudience: authz.AudienceOff},
		authz.RuleConfig{Name: "other", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/"}},
			Action: authz.ActionAuthenticate, Authenticators: []string{"keys", "bearer"}},
	)
	p, err := authz.NewPipeline(cfg, testAuthenticators(), authz.Options{NewID: authztest.SequentialIDs(),
		Assertion: &authz.AssertionOptions{Header: "X-Ext-Authz-Assertion", Audience: "default-aud",
			HostAudiences: map[string]string{"api.example.com": "api-svc"}, Asserter: asserter}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newAssertionMinter(t testing.TB, opts assertion.MinterOptions) *assertion.Minter {
	t.Helper()
	ring, err := assertion.NewGeneratedRing(assertion.ES256, assertion.RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Issuer = "https://ext-authz.test"
	m, err := assertion.NewMinter(ring, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// verifyUpstream is the upstream's (or its sidecar's) check, with go-jose:
// the signature against the published keys, issuer, audience, time.
func verifyUpstream(t *testing.T, jwks []byte, token, aud string) (map[string]any, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(&set, &std, &all); err != nil {
		return nil, err
	}
	return all, std.Validate(jwt.Expected{Issuer: "https://ext-authz.test", AnyAudience: jwt.Audience{aud}, Time: time.Now()})
}

// TestAssertionReachesUpstream: each allowed request carries exactly the
// assertion the service signed (never a client's, in any spelling), with
// the audience of its rule, else host, else the default.
func TestAssertionReachesUpstream(t *testing.T) {
	m := newAssertionMinter(t, assertion.MinterOptions{})
	p := assertionPipeline(t, m)
	forged := "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0."
	tests := []struct {
		name    string
		give    *authz.Request
		wantAud string // "": no assertion upstream
		wantSub string
	}{
		{"rule audience", req("GET", "x.example.net", "/orders/1", "x-api-key", "k-alice"), "orders-svc", "alice"},
		{"host audience", req("GET", "api.example.com", "/api/v1", "x-api-key", "k-alice"), "api-svc", "alice"},
		{"default audience", req("GET", "x.example.net", "/anything", "authorization", "Bearer t-bob"), "default-aud", "bob"},
		{"client header replaced", req("GET", "x.example.net", "/orders/1", "x-api-key", "k-alice", assertionHeader, forged), "orders-svc", "alice"},
		{"client spellings removed", req("GET", "x.example.net", "/orders/1", "x-api-key", "k-alice", "X_Ext_Authz_Assertion", forged, "x-ext_authz-assertion", forged), "orders-svc", "alice"},
		{"rule turns it off: client header removed", req("GET", "x.example.net", "/legacy/1", "x-api-key", "k-alice", assertionHeader, forged, "X_EXT_AUTHZ_ASSERTION", forged), "", ""},
		{"anonymous: client header removed", req("GET", "x.example.net", "/healthz", assertionHeader, forged), "", ""},
		{"anonymous: client spelling removed", req("GET", "x.example.net", "/healthz", assertionHeader, forged, "X_Ext_Authz_Assertion", forged), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := maps.Clone(tt.give.Headers)
			d := p.Decide(context.Background(), tt.give)
			if !d.Allowed() {
				t.Fatalf("denied: %s", d.Reason)
			}
			up := cgiView(forwarded(sent, d))
			got, ok := up[assertionHeader]
			if tt.wantAud == "" {
				if ok {
					t.Fatalf("upstream gets an assertion %q", got)
				}
				return
			}
			if got == forged || got == "<ambiguous>" || !ok {
				t.Fatalf("upstream assertion = %q", got)
			}
			claims, err := verifyUpstream(t, m.Ring().JWKS(), got, tt.wantAud)
			if err != nil {
				t.Fatalf("upstream refuses the assertion: %v", err)
			}
			if claims["sub"] != tt.wantSub {
				t.Errorf("sub = %v, want %s", claims["sub"], tt.wantSub)
			}
			// Replayed to another upstream, it is refused there.
			if _, err := verifyUpstream(t, m.Ring().JWKS(), got, "some-other-svc"); err == nil {
				t.Error("another audience accepted the assertion")
			}
		})
	}
}

// TestAssertionNotOnDenials: a denied request carries no header at all.
func TestAssertionNotOnDenials(t *testing.T) {
	p := assertionPipeline(t, newAssertionMinter(t, assertion.MinterOptions{}))
	for _, r := range []*authz.Request{
		req("GET", "x.example.net", "/orders/1", "x-api-key", "wrong"),
		req("GET", "x.example.net", "/orders/1"),
		req("GET", "x.example.net", "/internal/x", "x-api-key", "k-alice"),
	} {
		d := p.Decide(context.Background(), r)
		if d.Allowed() || len(d.UpstreamHeaders) != 0 {
			t.Errorf("%s: %v %v", r.Path, d.Code, d.UpstreamHeaders)
		}
	}
}

type failingAsserter struct{}

func (failingAsserter) Mint(*tokens.Principal, string, string, string) (string, error) {
	return "", errors.New("no key")
}

func TestAssertionFailureFailsClosed(t *testing.T) {
	p := assertionPipeline(t, failingAsserter{})
	d := p.Decide(context.Background(), req("GET", "x.example.net", "/orders/1", "x-api-key", "k-alice"))
	if d.Code != authz.Unavailable || d.Reason != "assertion_unavailable" || len(d.UpstreamHeaders) != 0 {
		t.Fatalf("got %v %s %v", d.Code, d.Reason, d.UpstreamHeaders)
	}
	// Anonymous requests need no assertion and are not affected.
	if d := p.Decide(context.Background(), req("GET", "x.example.net", "/healthz")); !d.Allowed() {
		t.Fatal(d.Reason)
	}
}

// TestAssertionPerDecisionJTI: in per-decision mode the jti is the
// decision id, which the access log carries (dynamic metadata).
func TestAssertionPerDecisionJTI(t *testing.T) {
	m := newAssertionMinter(t, assertion.MinterOptions{PerDecision: true})
	p := assertionPipeline(t, m)
	for range 2 {
		d := p.Decide(context.Background(), req("GET", "x.example.net", "/orders/1", "x-api-key", "k-alice"))
		var tok string
		for _, h := range d.UpstreamHeaders {
			if h.Name == assertionHeader {
				tok = h.Value
			}
		}
		claims, err := verifyUpstream(t, m.Ring().JWKS(), tok, "orders-svc")
		if err != nil {
			t.Fatal(err)
		}
		if claims["jti"] != d.ID {
			t.Errorf("jti %v, decision %s", claims["jti"], d.ID)
		}
	}
}

func TestAssertionConfigErrors(t *testing.T) {
	m := newAssertionMinter(t, assertion.MinterOptions{})
	base := authz.Config{Rules: []authz.RuleConfig{{Name: "a", Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}}}}
	tests := []struct {
		name string
		cfg  func(c *authz.Config)
		opts *authz.AssertionOptions
		want string
	}{
		{"audience on an allow rule", func(c *authz.Config) {
			c.Rules[0] = authz.RuleConfig{Name: "a", Action: authz.ActionAllow, AssertionAudience: "x"}
		}, &authz.AssertionOptions{Header: "x-a", Audience: "d", Asserter: m}, "rules[0].assertion_audience: only an authenticate rule"},
		{"audience without the section", func(c *authz.Config) { c.Rules[0].AssertionAudience = "x" }, nil,
			"rules[0].assertion_audience: no upstream_assertion is configured"},
		{"audience with a line break", func(c *authz.Config) { c.Rules[0].AssertionAudience = "x\ny" },
			&authz.AssertionOptions{Header: "x-a", Audience: "d", Asserter: m}, "rules[0].assertion_audience"},
		{"header is an identity header", nil, &authz.AssertionOptions{Header: "X-Auth-Subject", Audience: "d", Asserter: m}, "upstream_assertion.header"},
		{"header is authorization", nil, &authz.AssertionOptions{Header: "authorization", Audience: "d", Asserter: m}, "upstream_assertion.header"},
		{"no default audience", nil, &authz.AssertionOptions{Header: "x-a", Asserter: m}, "upstream_assertion.audience"},
		{"host not canonical", nil, &authz.AssertionOptions{Header: "x-a", Audience: "d", Asserter: m,
			HostAudiences: map[string]string{"API.example.com:443": "x"}}, "upstream_assertion.audiences.API.example.com:443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.Rules = append([]authz.RuleConfig(nil), base.Rules...)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			_, err := authz.NewPipeline(cfg, testAuthenticators(), authz.Options{Assertion: tt.opts})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

type countingAsserter struct {
	n atomic.Int64
	m *assertion.Minter
}

func (c *countingAsserter) Mint(p *tokens.Principal, authn, aud, id string) (string, error) {
	c.n.Add(1)
	return c.m.Mint(p, authn, aud, id)
}

// TestAssertionCandidatePolicy: a candidate policy beside the live one
// (policy_candidate) signs nothing, and an assertion signed per decision
// (a different value every time) is no disagreement; a candidate that
// sends none where live does is one.
func TestAssertionCandidatePolicy(t *testing.T) {
	asserter := &countingAsserter{m: newAssertionMinter(t, assertion.MinterOptions{PerDecision: true})}
	live := assertionPipeline(t, asserter)
	cfg := testPolicy()
	cfg.Rules = append(cfg.Rules,
		authz.RuleConfig{Name: "orders", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/orders/"}},
			Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}, AssertionAudience: "orders-svc"},
		authz.RuleConfig{Name: "legacy", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/legacy/"}},
			Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}, AssertionAudience: authz.AudienceOff},
		authz.RuleConfig{Name: "other", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/"}},
			Action: authz.ActionAuthenticate, Authenticators: []string{"keys", "bearer"}},
	)
	cand := cfg
	cand.Rules = slices.Clone(cfg.Rules)
	cand.Rules[len(cand.Rules)-3].Name = "orders-renamed"        // same decision under another name
	cand.Rules[len(cand.Rules)-3].Match.Path.Prefix = "/orders/" // (not a twin: compared for real)
	cand.Rules[len(cand.Rules)-3].Require.Scopes = []string{"read"}
	cand.Rules[len(cand.Rules)-2].AssertionAudience = "legacy-svc" // live sends none here
	opts := authz.Options{NewID: authztest.SequentialIDs(), Assertion: &authz.AssertionOptions{Header: "X-Ext-Authz-Assertion",
		Audience: "default-aud", HostAudiences: map[string]string{"api.example.com": "api-svc"}, Asserter: asserter}}
	c, err := authz.NewCandidate(live, cfg, cand, opts)
	if err != nil {
		t.Fatal(err)
	}
	before := asserter.n.Load()
	d, cmp := c.Compare(context.Background(), req("GET", "x.example.net", "/orders/1", "x-api-key", "k-alice"))
	if !d.Allowed() || len(cmp.Differs) != 0 {
		t.Errorf("same decision, per-decision assertion: %v differs %v", d.Code, cmp.Differs)
	}
	if n := asserter.n.Load() - before; n != 1 {
		t.Errorf("%d assertions minted for one request, want the live one only", n)
	}
	_, cmp = c.Compare(context.Background(), req("GET", "x.example.net", "/legacy/1", "x-api-key", "k-alice"))
	if !slices.Contains(cmp.Differs, "rule_headers") {
		t.Errorf("a candidate sending an assertion where live sends none: differs %v", cmp.Differs)
	}
}
