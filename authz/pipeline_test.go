package authz_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/tokens"
)

var (
	alice = tokens.Principal{Subject: "alice", Issuer: "keys", Method: tokens.MethodAPIKey, AppID: "app1",
		Scopes: []string{"read"}, Claims: map[string]any{"team": "payments", "groups": []any{"a", "b"}, "level": float64(3)}}
	root = tokens.Principal{Subject: "root", Issuer: "keys", Method: tokens.MethodAPIKey,
		Scopes: []string{"read", "admin"}, Claims: map[string]any{"team": "platform"}}
	bob = tokens.Principal{Subject: "bob", Issuer: "jwt-issuer", Method: tokens.MethodJWT,
		Scopes: []string{"read"}, Claims: map[string]any{"team": "payments"}}
)

func testPolicy() authz.Config {
	return authz.Config{
		Realm: "test",
		IdentityHeaders: authz.IdentityHeaders{
			Claims:     map[string]string{"team": "x-auth-team", "groups": "x-auth-groups"},
			AlsoRemove: []string{"x-legacy-user"},
		},
		Rules: []authz.RuleConfig{
			{Name: "health", Match: authz.MatchConfig{Path: authz.PathMatch{Exact: "/healthz"}, Methods: []string{"get"}}, Action: authz.ActionAllow},
			{Name: "blocked", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/internal/"}}, Action: authz.ActionDeny},
			{Name: "admin", Match: authz.MatchConfig{Hosts: []string{"*.example.com"}, Path: authz.PathMatch{Prefix: "/admin/"}},
				Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}, Require: authz.Requirements{Scopes: []string{"admin"}}},
			{Name: "payments", Match: authz.MatchConfig{Hosts: []string{"pay.example.com"}, Path: authz.PathMatch{Regex: `/v[0-9]+/pay(/.*)?`}},
				Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}, Require: authz.Requirements{Claims: map[string][]string{"team": {"payments"}}}},
			{Name: "api", Match: authz.MatchConfig{Hosts: []string{"api.example.com", "*.example.org"}, Path: authz.PathMatch{Prefix: "/api/"}},
				Action: authz.ActionAuthenticate, Authenticators: []string{"keys", "bearer", "cookie"}},
		},
	}
}

func testAuthenticators() []*authz.Authenticator {
	return []*authz.Authenticator{
		{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, ChallengeScheme: "ApiKey", StripCredential: true,
			Verifier: authztest.Credentials{"k-alice": alice, "k-root": root}},
		{Name: "bearer", Source: authz.CredentialSource{Authorization: "Bearer"},
			Verifier: authztest.Credentials{"t-bob": bob}},
		{Name: "cookie", Source: authz.CredentialSource{Cookie: "session"}, StripCredential: true,
			Verifier: authztest.Credentials{"s-bob": bob}},
	}
}

func newTestPipeline(t testing.TB) *authz.Pipeline {
	t.Helper()
	p, err := authz.NewPipeline(testPolicy(), testAuthenticators(), authz.Options{NewID: authztest.SequentialIDs()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func req(method, host, path string, headers ...string) *authz.Request {
	h := map[string]string{}
	for i := 0; i+1 < len(headers); i += 2 {
		h[headers[i]] = headers[i+1]
	}
	p, q, _ := strings.Cut(path, "?")
	return &authz.Request{Method: method, Host: host, Path: p, Query: q, Headers: h}
}

func TestDecide(t *testing.T) {
	p := newTestPipeline(t)
	allIdentity := []string{"x-auth-app-id", "x-auth-groups", "x-auth-issuer", "x-auth-method", "x-auth-scopes", "x-auth-subject", "x-auth-team", "x-legacy-user"}
	tests := []struct {
		name       string
		give       *authz.Request
		wantCode   authz.Code
		wantReason string
		wantRule   string
		wantSub    string
		wantChal   []string
	}{
		{name: "anonymous health", give: req("GET", "any.host", "/healthz"), wantRule: "health"},
		{name: "health query ignored", give: req("get", "any.host", "/healthz?full=1"), wantRule: "health"},
		{name: "health wrong method falls through to no match", give: req("POST", "any.host", "/healthz"), wantCode: authz.Forbidden, wantReason: "no_matching_rule"},
		{name: "deny rule", give: req("GET", "h", "/internal/x"), wantCode: authz.Forbidden, wantReason: "denied_by_rule", wantRule: "blocked"},
		{name: "dot segments resolved before matching", give: req("GET", "h", "/public/../internal/x"), wantCode: authz.Forbidden, wantReason: "denied_by_rule", wantRule: "blocked"},
		{name: "encoded dots resolved", give: req("GET", "h", "/public/%2e%2E/internal/x"), wantCode: authz.Forbidden, wantReason: "denied_by_rule", wantRule: "blocked"},
		{name: "double slash merged", give: req("GET", "h", "//internal//x"), wantCode: authz.Forbidden, wantReason: "denied_by_rule", wantRule: "blocked"},
		{name: "encoded slash rejected", give: req("GET", "h", "/internal%2Fx"), wantCode: authz.BadRequest, wantReason: "invalid_path"},
		{name: "relative path rejected", give: req("GET", "h", "internal/x"), wantCode: authz.BadRequest, wantReason: "invalid_path"},
		{name: "invalid UTF-8 path rejected", give: req("GET", "h", "/public/\xff"), wantCode: authz.BadRequest, wantReason: "invalid_path"},
		{name: "overlong UTF-8 slash rejected", give: req("GET", "h", "/public/..\xc0\xafinternal/x"), wantCode: authz.BadRequest, wantReason: "invalid_path"},
		{name: "valid UTF-8 path matched", give: req("GET", "h", "/internal/caf\u00e9"), wantCode: authz.Forbidden, wantReason: "denied_by_rule", wantRule: "blocked"},
		{name: "invalid UTF-8 host rejected", give: req("GET", "api.example.com\xff", "/api/x"), wantCode: authz.BadRequest, wantReason: "invalid_host"},
		{name: "host with a space rejected", give: req("GET", "api.example.com x", "/api/x"), wantCode: authz.BadRequest, wantReason: "invalid_host"},
		{name: "host with a control character rejected", give: req("GET", "api.example.com\x00", "/api/x"), wantCode: authz.BadRequest, wantReason: "invalid_host"},
		{name: "no method", give: req("", "h", "/x"), wantCode: authz.BadRequest, wantReason: "missing_request_attributes"},
		{name: "no match", give: req("GET", "unknown.com", "/x"), wantCode: authz.Forbidden, wantReason: "no_matching_rule"},
		{name: "missing credential", give: req("GET", "api.example.com", "/api/x"), wantCode: authz.Unauthenticated, wantReason: "missing_credential", wantRule: "api",
			wantChal: []string{`ApiKey realm="test"`, `Bearer realm="test"`}},
		{name: "unknown key", give: req("GET", "api.example.com", "/api/x", "x-api-key", "nope"), wantCode: authz.Unauthenticated, wantReason: "unknown_credential", wantRule: "api",
			wantChal: []string{`ApiKey realm="test", error="invalid_token", error_description="unknown_credential"`, `Bearer realm="test", error="invalid_token", error_description="unknown_credential"`}},
		{name: "empty key is malformed", give: req("GET", "api.example.com", "/api/x", "x-api-key", " "), wantCode: authz.Unauthenticated, wantReason: "malformed", wantRule: "api",
			wantChal: []string{`ApiKey realm="test", error="invalid_token", error_description="malformed"`, `Bearer realm="test", error="invalid_token", error_description="malformed"`}},
		{name: "api key", give: req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"), wantRule: "api", wantSub: "alice"},
		{name: "host port ignored, case folded", give: req("GET", "API.example.com:8443", "/api/x", "x-api-key", "k-alice"), wantRule: "api", wantSub: "alice"},
		{name: "wildcard host", give: req("GET", "a.b.example.org", "/api/x", "authorization", "bearer t-bob"), wantRule: "api", wantSub: "bob"},
		{name: "wildcard does not match apex", give: req("GET", "example.org", "/api/x"), wantCode: authz.Forbidden, wantReason: "no_matching_rule"},
		{name: "bearer scheme other than configured", give: req("GET", "api.example.com", "/api/x", "authorization", "Basic dTpw"), wantCode: authz.Unauthenticated, wantReason: "missing_credential", wantRule: "api",
			wantChal: []string{`ApiKey realm="test"`, `Bearer realm="test"`}},
		{name: "cookie", give: req("GET", "api.example.com", "/api/x", "cookie", "a=1; session=s-bob; b=2"), wantRule: "api", wantSub: "bob"},
		{name: "bad key, good bearer: first success wins", give: req("GET", "api.example.com", "/api/x", "x-api-key", "nope", "authorization", "Bearer t-bob"), wantRule: "api", wantSub: "bob"},
		{name: "unavailable verifier fails closed", give: req("GET", "api.example.com", "/api/x", "x-api-key", "unavailable"), wantCode: authz.Unavailable, wantReason: "authenticator_unavailable", wantRule: "api"},
		{name: "scope required", give: req("GET", "x.example.com", "/admin/x", "x-api-key", "k-alice"), wantCode: authz.Forbidden, wantReason: "insufficient_scope", wantRule: "admin", wantSub: "alice"},
		{name: "scope granted", give: req("GET", "x.example.com", "/admin/x", "x-api-key", "k-root"), wantRule: "admin", wantSub: "root"},
		{name: "claim required", give: req("POST", "pay.example.com", "/v2/pay/1", "x-api-key", "k-root"), wantCode: authz.Forbidden, wantReason: "claim_mismatch", wantRule: "payments", wantSub: "root"},
		{name: "claim accepted, regex whole path", give: req("POST", "pay.example.com", "/v2/pay", "x-api-key", "k-alice"), wantRule: "payments", wantSub: "alice"},
		{name: "regex anchored", give: req("POST", "pay.example.com", "/x/v2/pay", "x-api-key", "k-alice"), wantCode: authz.Forbidden, wantReason: "no_matching_rule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(context.Background(), tt.give)
			if d.Code != tt.wantCode || d.Reason != tt.wantReason || d.Rule != tt.wantRule || d.Subject() != tt.wantSub {
				t.Fatalf("Decide = code %v reason %q rule %q subject %q; want %v %q %q %q",
					d.Code, d.Reason, d.Rule, d.Subject(), tt.wantCode, tt.wantReason, tt.wantRule, tt.wantSub)
			}
			if !slices.Equal(d.Challenges, tt.wantChal) {
				t.Errorf("Challenges = %q, want %q", d.Challenges, tt.wantChal)
			}
			if d.ID == "" {
				t.Error("no decision id")
			}
			if !d.Allowed() && (len(d.UpstreamHeaders) > 0 || len(d.RemoveHeaders) > 0) {
				t.Errorf("denial carries upstream mutations: %v %v", d.UpstreamHeaders, d.RemoveHeaders)
			}
			if d.Allowed() && d.Identity == nil && !slices.Equal(d.RemoveHeaders, allIdentity) {
				t.Errorf("anonymous allow removes %v, want every identity header %v", d.RemoveHeaders, allIdentity)
			}
		})
	}
}

// Every identity header is either set by us or removed, never both (Envoy
// removes after it sets), and a forged value never survives.
func TestIdentityHeadersCannotBeForged(t *testing.T) {
	p := newTestPipeline(t)
	r := req("GET", "api.example.com", "/api/x",
		"x-api-key", "k-root", "x-auth-subject", "admin", "x-auth-team", "payments", "x-legacy-user", "root", "x-auth-groups", "all")
	d := p.Decide(context.Background(), r)
	if !d.Allowed() {
		t.Fatalf("denied: %v %s", d.Code, d.Reason)
	}
	set := map[string]string{}
	for _, h := range d.UpstreamHeaders {
		set[h.Name] = h.Value
	}
	want := map[string]string{
		"x-auth-subject": "root", "x-auth-issuer": "keys", "x-auth-method": "api-key",
		"x-auth-scopes": "read admin", "x-auth-team": "platform",
	}
	for k, v := range want {
		if set[k] != v {
			t.Errorf("upstream %s = %q, want %q", k, set[k], v)
		}
	}
	for _, n := range d.RemoveHeaders {
		if _, both := set[n]; both {
			t.Errorf("%s is both set and removed", n)
		}
	}
	for _, forged := range []string{"x-legacy-user", "x-auth-groups", "x-auth-app-id", "x-api-key"} {
		if !slices.Contains(d.RemoveHeaders, forged) {
			t.Errorf("%s not removed; RemoveHeaders = %v", forged, d.RemoveHeaders)
		}
	}
}

func TestListClaimRendering(t *testing.T) {
	p := newTestPipeline(t)
	d := p.Decide(context.Background(), req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"))
	for _, h := range d.UpstreamHeaders {
		if h.Name == "x-auth-groups" && h.Value != "a,b" {
			t.Fatalf("x-auth-groups = %q, want a,b", h.Value)
		}
	}
}

func TestStripCredential(t *testing.T) {
	p := newTestPipeline(t)
	tests := []struct {
		name       string
		give       *authz.Request
		wantSet    []authz.Header
		wantRemove string
		notRemoved string
	}{
		{name: "header", give: req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"), wantRemove: "x-api-key"},
		{name: "cookie kept others", give: req("GET", "api.example.com", "/api/x", "cookie", "a=1; session=s-bob; b=2"),
			wantSet: []authz.Header{{Name: "cookie", Value: "a=1; b=2"}}, notRemoved: "cookie"},
		{name: "only cookie", give: req("GET", "api.example.com", "/api/x", "cookie", "session=s-bob"), wantRemove: "cookie"},
		{name: "bearer not stripped unless configured", give: req("GET", "api.example.com", "/api/x", "authorization", "Bearer t-bob"), notRemoved: "authorization"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(context.Background(), tt.give)
			if !d.Allowed() {
				t.Fatalf("denied: %s", d.Reason)
			}
			for _, w := range tt.wantSet {
				if !slices.Contains(d.UpstreamHeaders, w) {
					t.Errorf("UpstreamHeaders %v lacks %v", d.UpstreamHeaders, w)
				}
			}
			if tt.wantRemove != "" && !slices.Contains(d.RemoveHeaders, tt.wantRemove) {
				t.Errorf("RemoveHeaders %v lacks %s", d.RemoveHeaders, tt.wantRemove)
			}
			if tt.notRemoved != "" && slices.Contains(d.RemoveHeaders, tt.notRemoved) {
				t.Errorf("RemoveHeaders %v has %s", d.RemoveHeaders, tt.notRemoved)
			}
		})
	}
}

func TestCancelledContextFailsClosed(t *testing.T) {
	p := newTestPipeline(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := p.Decide(ctx, req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"))
	if d.Code != authz.Unavailable || d.Reason != "deadline_exceeded" {
		t.Fatalf("Decide on cancelled ctx = %v %q, want unavailable deadline_exceeded", d.Code, d.Reason)
	}
}

func TestValidate(t *testing.T) {
	known := func(n string) bool { return n == "keys" }
	tests := []struct {
		name string
		give authz.RuleConfig
		want string
	}{
		{"no name", authz.RuleConfig{Action: "allow"}, "rules[0].name: required"},
		{"no action", authz.RuleConfig{Name: "r"}, "rules[0].action: required"},
		{"bad action", authz.RuleConfig{Name: "r", Action: "permit"}, `rules[0].action: "permit" is not one of`},
		{"allow with authenticators", authz.RuleConfig{Name: "r", Action: "allow", Authenticators: []string{"keys"}}, "allow takes no authenticators"},
		{"authenticate without", authz.RuleConfig{Name: "r", Action: "authenticate"}, "rules[0].authenticators: required"},
		{"unknown authenticator", authz.RuleConfig{Name: "r", Action: "authenticate", Authenticators: []string{"keys", "jwt"}}, `rules[0].authenticators[1]: no authenticator named "jwt"`},
		{"bad regex", authz.RuleConfig{Name: "r", Action: "allow", Match: authz.MatchConfig{Path: authz.PathMatch{Regex: "(["}}}, "rules[0].match.path.regex: error parsing regexp"},
		{"two path kinds", authz.RuleConfig{Name: "r", Action: "allow", Match: authz.MatchConfig{Path: authz.PathMatch{Exact: "/a", Prefix: "/b"}}}, "rules[0].match.path: set at most one"},
		{"relative prefix", authz.RuleConfig{Name: "r", Action: "allow", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "api"}}}, `rules[0].match.path.prefix: "api" must start with /`},
		{"bad wildcard", authz.RuleConfig{Name: "r", Action: "allow", Match: authz.MatchConfig{Hosts: []string{"a.*.com"}}}, `rules[0].match.hosts[0]: "a.*.com" is not a host`},
		{"bad method", authz.RuleConfig{Name: "r", Action: "allow", Match: authz.MatchConfig{Methods: []string{"GE T"}}}, `rules[0].match.methods[0]: "GE T" is not an HTTP method`},
		{"empty claim values", authz.RuleConfig{Name: "r", Action: "authenticate", Authenticators: []string{"keys"}, Require: authz.Requirements{Claims: map[string][]string{"team": nil}}}, "rules[0].require.claims.team: list at least one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := authz.Config{Rules: []authz.RuleConfig{tt.give}}
			c.ApplyDefaults()
			err := c.Validate(known)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
	t.Run("identity header that cannot carry identity", func(t *testing.T) {
		c := authz.Config{IdentityHeaders: authz.IdentityHeaders{Subject: "authorization"}, Rules: []authz.RuleConfig{{Name: "r", Action: "allow"}}}
		c.ApplyDefaults()
		if err := c.Validate(known); err == nil || !strings.Contains(err.Error(), "identity_headers.subject") {
			t.Fatalf("Validate() = %v", err)
		}
	})
	t.Run("duplicate rule name", func(t *testing.T) {
		c := authz.Config{Rules: []authz.RuleConfig{{Name: "r", Action: "allow"}, {Name: "r", Action: "deny"}}}
		c.ApplyDefaults()
		if err := c.Validate(known); err == nil || !strings.Contains(err.Error(), `rules[1].name: "r" is also the name of rules[0]`) {
			t.Fatalf("Validate() = %v", err)
		}
	})
}
