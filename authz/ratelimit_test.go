package authz_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/tokens"
)

// recorder is a Limiter that records the descriptors it is asked about and
// answers with res.
type recorder struct {
	mu   sync.Mutex
	got  []string
	res  ratelimit.Result
	err  error
	hits int
}

func (r *recorder) Check(_ context.Context, req ratelimit.Request) (ratelimit.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hits++
	var ds []string
	for _, d := range req.Descriptors {
		var es []string
		for _, e := range d.Entries {
			es = append(es, e.Key+"="+e.Value)
		}
		ds = append(ds, strings.Join(es, ","))
	}
	r.got = append(r.got, req.Domain+":"+strings.Join(ds, "|"))
	res := r.res
	res.Statuses = make([]ratelimit.Status, len(req.Descriptors))
	return res, r.err
}

func ptr[T any](v T) *T { return &v }

func limitedPolicy(action string, rl authz.RateLimits) authz.Config {
	r := authz.RuleConfig{Name: "r", Action: action, RateLimits: rl}
	if action == authz.ActionAuthenticate {
		r.Authenticators = []string{"keys"}
	}
	return authz.Config{Rules: []authz.RuleConfig{r}}
}

func TestRateLimitDescriptors(t *testing.T) {
	withClaims := tokens.Principal{Subject: "alice", AppID: "app-1", Issuer: "https://idp", Method: tokens.MethodAPIKey,
		Claims: map[string]any{"tenant": "acme", "groups": []any{"a", "b"}}}
	auth := []*authz.Authenticator{{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"},
		Verifier: authztest.Credentials{"k-alice": withClaims}}}
	acts := func(a ...authz.RateLimitAction) authz.RateLimitDescriptor {
		return authz.RateLimitDescriptor{Actions: a}
	}
	tests := []struct {
		name   string
		action string
		give   []authz.RateLimitDescriptor
		hops   int
		req    *authz.Request
		want   string // "" when the limiter must not be called
	}{
		{"generic key and identity", authz.ActionAuthenticate, []authz.RateLimitDescriptor{
			acts(authz.RateLimitAction{GenericKey: &authz.GenericKeyAction{DescriptorValue: "api"}},
				authz.RateLimitAction{Identity: &authz.IdentityAction{Field: "subject", DescriptorKey: "user"}}),
		}, 0, req("GET", "h", "/x", "x-api-key", "k-alice"), "d:generic_key=api,user=alice"},
		{"identity fields and claims", authz.ActionAuthenticate, []authz.RateLimitDescriptor{
			acts(authz.RateLimitAction{Identity: &authz.IdentityAction{Field: "app_id"}},
				authz.RateLimitAction{Identity: &authz.IdentityAction{Field: "issuer"}},
				authz.RateLimitAction{Identity: &authz.IdentityAction{Field: "method"}},
				authz.RateLimitAction{Identity: &authz.IdentityAction{Field: "claim:tenant"}},
				authz.RateLimitAction{Identity: &authz.IdentityAction{Field: "claim:groups", DescriptorKey: "g"}}),
		}, 0, req("GET", "h", "/x", "x-api-key", "k-alice"), "d:app_id=app-1,issuer=https://idp,method=api-key,tenant=acme,g=a,b"},
		{"missing claim drops the descriptor", authz.ActionAuthenticate, []authz.RateLimitDescriptor{
			acts(authz.RateLimitAction{Identity: &authz.IdentityAction{Field: "claim:nope"}}),
			acts(authz.RateLimitAction{GenericKey: &authz.GenericKeyAction{DescriptorValue: "kept"}}),
		}, 0, req("GET", "h", "/x", "x-api-key", "k-alice"), "d:generic_key=kept"},
		{"anonymous: identity absent, skip_if_absent keeps the rest", authz.ActionAllow, []authz.RateLimitDescriptor{
			acts(authz.RateLimitAction{Identity: &authz.IdentityAction{Field: "subject", SkipIfAbsent: true}},
				authz.RateLimitAction{RemoteAddress: &struct{}{}}),
		}, 0, &authz.Request{Method: "GET", Host: "h", Path: "/", PeerAddress: "192.0.2.7"}, "d:remote_address=192.0.2.7"},
		{"x-forwarded-for with one trusted hop", authz.ActionAllow, []authz.RateLimitDescriptor{
			acts(authz.RateLimitAction{RemoteAddress: &struct{}{}}),
			acts(authz.RateLimitAction{MaskedRemoteAddress: &authz.MaskedRemoteAddressAction{V4PrefixMaskLen: ptr(24)}}),
		}, 1, &authz.Request{Method: "GET", Host: "h", Path: "/", PeerAddress: "10.0.0.2",
			Headers: map[string]string{"x-forwarded-for": "6.6.6.6, 203.0.113.9, 10.0.0.1"}},
			"d:remote_address=203.0.113.9|masked_remote_address=203.0.113.0/24"},
		{"headers, path, method, host, context extension", authz.ActionAllow, []authz.RateLimitDescriptor{
			acts(authz.RateLimitAction{RequestHeaders: &authz.RequestHeadersAction{HeaderName: "X-Tenant", DescriptorKey: "tenant"}},
				authz.RateLimitAction{Path: &authz.KeyAction{}},
				authz.RateLimitAction{Method: &authz.KeyAction{DescriptorKey: "verb"}},
				authz.RateLimitAction{RequestHeaders: &authz.RequestHeadersAction{HeaderName: ":authority", DescriptorKey: "host"}},
				authz.RateLimitAction{ContextExtension: &authz.ContextExtensionAction{Key: "route"}}),
		}, 0, &authz.Request{Method: "post", Host: "API.example.com:443", Path: "/a/../b", Headers: map[string]string{"x-tenant": "t1"},
			ContextExtensions: map[string]string{"route": "search"}},
			"d:tenant=t1,path=/b,verb=POST,host=api.example.com,route=search"},
		{"absent header drops the descriptor", authz.ActionAllow, []authz.RateLimitDescriptor{
			acts(authz.RateLimitAction{RequestHeaders: &authz.RequestHeadersAction{HeaderName: "x-tenant", DescriptorKey: "tenant"}}),
		}, 0, req("GET", "h", "/"), ""},
		{"header_value_match", authz.ActionAllow, []authz.RateLimitDescriptor{
			acts(authz.RateLimitAction{HeaderValueMatch: &authz.HeaderValueMatchAction{DescriptorValue: "mobile",
				Headers: []authz.HeaderMatcher{{Name: "user-agent", Regex: ".*Android.*"}, {Name: "x-debug", Present: ptr(false)}}}}),
			acts(authz.RateLimitAction{HeaderValueMatch: &authz.HeaderValueMatchAction{DescriptorValue: "not-curl", ExpectMatch: ptr(false),
				Headers: []authz.HeaderMatcher{{Name: "user-agent", Prefix: "curl/"}}}}),
			acts(authz.RateLimitAction{HeaderValueMatch: &authz.HeaderValueMatchAction{DescriptorValue: "never",
				Headers: []authz.HeaderMatcher{{Name: "user-agent", Exact: "x"}}}}),
		}, 0, req("GET", "h", "/", "user-agent", "Mozilla (Android 14)"), "d:header_match=mobile|header_match=not-curl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			p, err := authz.NewPipeline(limitedPolicy(tt.action, authz.RateLimits{Domain: "d", Descriptors: tt.give}), auth,
				authz.Options{Limiter: rec, XFFNumTrustedHops: tt.hops})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(context.Background(), tt.req)
			if !d.Allowed() {
				t.Fatalf("decision %v %s", d.Code, d.Reason)
			}
			got := strings.Join(rec.got, " ")
			if got != tt.want {
				t.Errorf("descriptors\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

func TestClientAddress(t *testing.T) {
	tests := []struct {
		xff, peer string
		hops      int
		want      string
	}{
		{"", "192.0.2.1", 0, "192.0.2.1"},
		{"1.1.1.1, 192.0.2.1", "192.0.2.1", 0, "192.0.2.1"},
		{"1.1.1.1,2.2.2.2", "2.2.2.2", 1, "1.1.1.1"},
		{"1.1.1.1", "2.2.2.2", 1, "2.2.2.2"}, // too few entries: the peer
		{"9.9.9.9, 1.1.1.1, 3.3.3.3, 2.2.2.2", "2.2.2.2", 2, "1.1.1.1"},
		{"junk, 2.2.2.2", "2.2.2.2", 1, ""},
		{"", "[2001:db8::1]:443", 0, "2001:db8::1"},
		{"", "::ffff:192.0.2.1", 0, "192.0.2.1"},
		{"", "", 0, ""},
	}
	for _, tt := range tests {
		r := &authz.Request{PeerAddress: tt.peer, Headers: map[string]string{"x-forwarded-for": tt.xff}}
		ip, ok := authz.ClientAddress(r, tt.hops)
		got := ""
		if ok {
			got = ip.String()
		}
		if got != tt.want {
			t.Errorf("ClientAddress(xff=%q peer=%q hops=%d) = %q, want %q", tt.xff, tt.peer, tt.hops, got, tt.want)
		}
	}
}

const limitsFile = `
domain: gateway
descriptors:
  - key: user
    rate_limit: {name: per-user, unit: minute, requests_per_unit: 3}
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 2}
`

func realLimiter(t *testing.T) *ratelimit.Limiter {
	rules, err := envoyconfig.Parse([]envoyconfig.File{{Name: "l.yaml", Content: []byte(limitsFile)}})
	if err != nil {
		t.Fatal(err)
	}
	return ratelimit.New(memory.New(memory.Options{}), rules, ratelimit.Options{
		Now: func() time.Time { return time.Unix(1_700_000_025, 0) },
	})
}

// TestPerUserLimitInCheck runs the pipeline with the real limiter over the
// memory store: three requests per user per minute, then 429 with headers,
// while another user is unaffected.
func TestPerUserLimitInCheck(t *testing.T) {
	cfg := testPolicy()
	for i := range cfg.Rules {
		if cfg.Rules[i].Name == "api" {
			cfg.Rules[i].RateLimits = authz.RateLimits{Domain: "gateway", Descriptors: []authz.RateLimitDescriptor{
				{Actions: []authz.RateLimitAction{{Identity: &authz.IdentityAction{Field: "subject", DescriptorKey: "user"}}}},
			}}
		}
		if cfg.Rules[i].Name == "health" {
			cfg.Rules[i].RateLimits = authz.RateLimits{Domain: "gateway", Descriptors: []authz.RateLimitDescriptor{
				{Actions: []authz.RateLimitAction{{RemoteAddress: &struct{}{}}}},
			}}
		}
	}
	p, err := authz.NewPipeline(cfg, testAuthenticators(), authz.Options{
		Limiter: realLimiter(t), RateLimitHeaders: ratelimit.HeaderOptions{Draft: true, Legacy: true}, RateLimitHeadersOnAllow: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	api := func(key string) authz.Decision {
		return p.Decide(context.Background(), req("GET", "api.example.com", "/api/x", "x-api-key", key))
	}
	for i := range 3 {
		d := api("k-alice")
		if !d.Allowed() {
			t.Fatalf("request %d: %v %s", i+1, d.Code, d.Reason)
		}
		if h := headerValue(d.ResponseHeaders, "ratelimit"); h != `"per-user";r=`+string(rune('2'-i))+`;t=15` {
			t.Errorf("request %d: RateLimit %q", i+1, h)
		}
		if headerValue(d.UpstreamHeaders, "x-auth-subject") != "alice" {
			t.Errorf("request %d: identity headers not rendered: %v", i+1, d.UpstreamHeaders)
		}
	}
	d := api("k-alice")
	if d.Code != authz.RateLimited || d.Reason != "rate_limited" || d.Subject() != "alice" {
		t.Fatalf("4th: %v %s", d.Code, d.Reason)
	}
	want := map[string]string{"retry-after": "15", "ratelimit-policy": `"per-user";q=3;w=60`, "ratelimit": `"per-user";r=0;t=15`,
		"x-ratelimit-limit": "3", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "15"}
	for name, v := range want {
		if got := headerValue(d.ResponseHeaders, name); got != v {
			t.Errorf("429 %s = %q, want %q", name, got, v)
		}
	}
	if len(d.UpstreamHeaders) != 0 {
		t.Errorf("429 carries upstream headers %v", d.UpstreamHeaders)
	}
	if d := api("k-root"); !d.Allowed() {
		t.Errorf("another user: %v %s", d.Code, d.Reason)
	}
	// Anonymous allow rule, per client address.
	health := func(ip string) authz.Decision {
		r := req("GET", "h", "/healthz")
		r.PeerAddress = ip
		return p.Decide(context.Background(), r)
	}
	for range 2 {
		if d := health("192.0.2.1"); !d.Allowed() {
			t.Fatalf("health: %v", d.Code)
		}
	}
	if d := health("192.0.2.1"); d.Code != authz.RateLimited {
		t.Fatalf("3rd health from one address: %v", d.Code)
	}
	if d := health("192.0.2.2"); !d.Allowed() {
		t.Fatalf("health from another address: %v", d.Code)
	}
}

func headerValue(hs []authz.Header, name string) string {
	for _, h := range hs {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

func TestRateLimitFailures(t *testing.T) {
	down := errors.New("store down")
	tests := []struct {
		name       string
		give       ratelimit.Result
		wantCode   authz.Code
		wantReason string
	}{
		{"fail closed 503", ratelimit.Result{Code: ratelimit.Unavailable, Failed: true}, authz.Unavailable, "rate_limit_unavailable"},
		{"fail closed 429", ratelimit.Result{Code: ratelimit.OverLimit, Failed: true}, authz.RateLimited, "rate_limit_unavailable"},
		{"fail open", ratelimit.Result{Code: ratelimit.OK, Failed: true, FailedOpen: true}, authz.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{res: tt.give, err: down}
			p, err := authz.NewPipeline(limitedPolicy(authz.ActionAuthenticate, authz.RateLimits{Domain: "d", Descriptors: []authz.RateLimitDescriptor{
				{Actions: []authz.RateLimitAction{{Identity: &authz.IdentityAction{Field: "subject"}}}},
			}}), testAuthenticators(), authz.Options{Limiter: rec})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(context.Background(), req("GET", "h", "/", "x-api-key", "k-alice"))
			if d.Code != tt.wantCode || d.Reason != tt.wantReason {
				t.Fatalf("%v %q, want %v %q", d.Code, d.Reason, tt.wantCode, tt.wantReason)
			}
			if rec.hits != 1 {
				t.Fatalf("limiter called %d times", rec.hits)
			}
		})
	}
	// Unauthenticated requests never reach the limiter.
	rec := &recorder{}
	p, _ := authz.NewPipeline(limitedPolicy(authz.ActionAuthenticate, authz.RateLimits{Domain: "d", Descriptors: []authz.RateLimitDescriptor{
		{Actions: []authz.RateLimitAction{{GenericKey: &authz.GenericKeyAction{DescriptorValue: "x"}}}},
	}}), testAuthenticators(), authz.Options{Limiter: rec})
	if d := p.Decide(context.Background(), req("GET", "h", "/", "x-api-key", "bad")); d.Code != authz.Unauthenticated || rec.hits != 0 {
		t.Fatalf("%v, limiter hits %d", d.Code, rec.hits)
	}
}

func TestRateLimitsValidate(t *testing.T) {
	one := func(a authz.RateLimitAction) authz.RateLimits {
		return authz.RateLimits{Domain: "d", Descriptors: []authz.RateLimitDescriptor{{Actions: []authz.RateLimitAction{a}}}}
	}
	tests := []struct {
		name   string
		action string
		give   authz.RateLimits
		want   string
	}{
		{"no domain", authz.ActionAllow, authz.RateLimits{Descriptors: []authz.RateLimitDescriptor{{Actions: []authz.RateLimitAction{{Path: &authz.KeyAction{}}}}}}, "rules[0].rate_limits.domain: required"},
		{"no actions", authz.ActionAllow, authz.RateLimits{Domain: "d", Descriptors: []authz.RateLimitDescriptor{{}}}, "rules[0].rate_limits.descriptors[0].actions: at least one action"},
		{"empty action", authz.ActionAllow, one(authz.RateLimitAction{}), "rules[0].rate_limits.descriptors[0].actions[0]: set one of"},
		{"two kinds", authz.ActionAllow, one(authz.RateLimitAction{Path: &authz.KeyAction{}, Method: &authz.KeyAction{}}), "set exactly one action, not 2"},
		{"generic without value", authz.ActionAllow, one(authz.RateLimitAction{GenericKey: &authz.GenericKeyAction{}}), "generic_key.descriptor_value: required"},
		{"mask", authz.ActionAllow, one(authz.RateLimitAction{MaskedRemoteAddress: &authz.MaskedRemoteAddressAction{V4PrefixMaskLen: ptr(33)}}), "v4_prefix_mask_len: 33"},
		{"credential header", authz.ActionAllow, one(authz.RateLimitAction{RequestHeaders: &authz.RequestHeadersAction{HeaderName: "Authorization", DescriptorKey: "a"}}), "carries credentials"},
		{"identity field", authz.ActionAuthenticate, one(authz.RateLimitAction{Identity: &authz.IdentityAction{Field: "email"}}), `identity.field: "email" is not one of`},
		{"regex", authz.ActionAllow, one(authz.RateLimitAction{HeaderValueMatch: &authz.HeaderValueMatchAction{DescriptorValue: "v", Headers: []authz.HeaderMatcher{{Name: "a", Regex: "("}}}}), "header_value_match.headers[0].regex"},
		{"deny rule", authz.ActionDeny, one(authz.RateLimitAction{Path: &authz.KeyAction{}}), "rules[0].rate_limits: a deny rule takes no rate limits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := authz.NewPipeline(limitedPolicy(tt.action, tt.give), testAuthenticators(), authz.Options{Limiter: &recorder{}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
	_, err := authz.NewPipeline(limitedPolicy(authz.ActionAllow, one(authz.RateLimitAction{Path: &authz.KeyAction{}})), nil, authz.Options{})
	var fe *yamlfile.FieldError
	if !errors.As(err, &fe) || fe.Path != "rules[0].rate_limits" {
		t.Fatalf("no limiter: %v", err)
	}
}

// TestNewPipelineCompilesRateLimitsOnce: the rate-limit actions NewPipeline
// uses are the ones validation compiled, not a second compilation. Counted
// in allocations, the cost rate limits add to NewPipeline is their cost in
// Validate (regex compilation dominates both), not twice that.
func TestNewPipelineCompilesRateLimitsOnce(t *testing.T) {
	var rl authz.RateLimits
	rl.Domain = "d"
	for i := range 40 {
		rl.Descriptors = append(rl.Descriptors, authz.RateLimitDescriptor{Actions: []authz.RateLimitAction{
			{HeaderValueMatch: &authz.HeaderValueMatchAction{DescriptorValue: "v", Headers: []authz.HeaderMatcher{
				{Name: "user-agent", Regex: `(?i)(curl|wget|python-requests|go-http-client)/[0-9]+(\.[0-9]+)*-` + strings.Repeat("x", i)},
			}}},
		}})
	}
	limited := limitedPolicy(authz.ActionAllow, rl)
	plain := limitedPolicy(authz.ActionAllow, authz.RateLimits{})
	limited.ApplyDefaults()
	plain.ApplyDefaults()
	none := func(string) bool { return false }
	opts := authz.Options{Limiter: &recorder{}}
	for _, cfg := range []authz.Config{limited, plain} {
		if err := cfg.Validate(none); err != nil {
			t.Fatal(err)
		}
		if _, err := authz.NewPipeline(cfg, nil, opts); err != nil {
			t.Fatal(err)
		}
	}
	validate := testing.AllocsPerRun(10, func() { _ = limited.Validate(none) }) -
		testing.AllocsPerRun(10, func() { _ = plain.Validate(none) })
	build := testing.AllocsPerRun(10, func() { _, _ = authz.NewPipeline(limited, nil, opts) }) -
		testing.AllocsPerRun(10, func() { _, _ = authz.NewPipeline(plain, nil, opts) })
	t.Logf("allocations of 40 rate-limit regexes: Validate %.0f, NewPipeline %.0f", validate, build)
	if validate < 40 {
		t.Fatalf("Validate allocates %.0f for 40 regexes: the measurement does not see compilation", validate)
	}
	if build > validate*5/4 {
		t.Fatalf("NewPipeline allocates %.0f for the rate limits, Validate %.0f: they are compiled more than once", build, validate)
	}
}
