package generation

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
)

// TestAuthKindsMatchConfig: every kind section of AuthenticatorConfig has
// an entry in authKinds under its yaml name and back, so adding a kind is
// one field and one entry, and neither can be forgotten.
func TestAuthKindsMatchConfig(t *testing.T) {
	common := map[string]bool{"name": true, "source": true, "challenge_scheme": true, "strip_credential": true}
	ty := reflect.TypeFor[AuthenticatorConfig]()
	fields := map[string]reflect.StructField{}
	for i := range ty.NumField() {
		f := ty.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !common[name] {
			fields[name] = f
		}
	}
	kinds := map[string]*authKind{}
	for i := range authKinds {
		kinds[authKinds[i].name] = &authKinds[i]
	}
	for name, f := range fields {
		k := kinds[name]
		if k == nil {
			t.Errorf("AuthenticatorConfig.%s (yaml %q) has no entry in authKinds", f.Name, name)
			continue
		}
		// Setting only this field selects this kind.
		var ac AuthenticatorConfig
		reflect.ValueOf(&ac).Elem().FieldByIndex(f.Index).Set(reflect.New(f.Type.Elem()))
		if got, sec := ac.kind(); got != k || sec == nil {
			t.Errorf("a config with only %s set is kind %v", name, got)
		}
	}
	for name := range kinds {
		if _, ok := fields[name]; !ok {
			t.Errorf("authKinds has %q, which no AuthenticatorConfig field decodes", name)
		}
	}
}

// TestAuthenticatorValidateKinds: none and two kinds are one error each,
// at the entry, listing the kinds; a kind's own error carries its path.
func TestAuthenticatorValidateKinds(t *testing.T) {
	for _, tc := range []struct {
		name, give, want string
	}{
		{"none", `{name: a, source: {header: x}}`, "set exactly one verifier kind (api_key, jwt, udb_ticket, udb_session, introspection, mtls); found 0"},
		{"two", `{name: a, source: {header: x}, api_key: {file: k}, udb_session: {}}`, "found 2"},
		{"kind's own", `{name: a, source: {header: x}, udb_session: {key_encoding: rot13}}`, "udb_session.key_encoding: must be sha256 or plain"},
		{"mtls without the peer source", `{name: a, source: {header: x}, mtls: {allow: [{trust_domain: example.org}]}}`, "source: the mtls kind takes the TLS peer"},
		{"peer source for another kind", `{name: a, source: {peer: true}, api_key: {file: k}}`, "source.peer: only the mtls kind"},
		{"peer beside a header", `{name: a, source: {peer: true, header: x}, mtls: {allow: [{trust_domain: example.org}]}}`, "set exactly one of header, cookie, authorization, peer"},
		{"introspection's own", `{name: a, source: {authorization: Bearer}, introspection: {endpoint: "http://as/i", client_id: c, client_secret_file: s}}`, "introspection.endpoint: is http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ac AuthenticatorConfig
			if _, err := yamlfile.Decode("a.yaml", []byte(tc.give), &ac, func(string) string { return "" }); err != nil {
				t.Fatal(err)
			}
			err := ac.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRateLimitBackendsMatchConfig: every backend name the ratelimit
// package declares has an entry in rateLimitBackends and back, each entry
// builds a store, and an unknown name is refused listing the entries, so
// adding a backend is one entry and cannot be half done.
func TestRateLimitBackendsMatchConfig(t *testing.T) {
	declared := []string{ratelimit.BackendMemory, ratelimit.BackendRedis}
	if got := rateLimitBackendNames(); !slices.Equal(got, declared) {
		t.Errorf("rateLimitBackends = %v, want the declared backends %v", got, declared)
	}
	var c ratelimit.Config
	c.ApplyDefaults()
	if rateLimitBackendOf(c.Backend) == nil {
		t.Errorf("the default backend %q has no entry", c.Backend)
	}
	for _, b := range rateLimitBackends {
		if b.open == nil {
			t.Errorf("backend %s: no open", b.name)
		}
	}
	cfg := &Config{RateLimit: ratelimit.Config{Backend: "etcd", Files: []string{"x"}}}
	err := cfg.validateRateLimitBackend()
	if err == nil || !strings.Contains(err.Error(), `rate_limit.backend: "etcd" is not one of memory, redis`) {
		t.Errorf("unknown backend: %v", err)
	}
	cfg.RateLimit.Backend = ratelimit.BackendRedis
	if err := cfg.validateRateLimitBackend(); err == nil || !strings.Contains(err.Error(), "redis needs the redis section") {
		t.Errorf("redis without a redis section: %v", err)
	}
	cfg.RateLimit.Files = nil // rate limiting off: the backend needs nothing
	if err := cfg.validateRateLimitBackend(); err != nil {
		t.Errorf("redis backend with rate limiting off: %v", err)
	}
}

// TestMemoryBackendBuildsAndShares: building the memory backend twice
// under one pool shares one limiter (the key covers the settings), and a
// changed setting builds another.
func TestMemoryBackendBuildsAndShares(t *testing.T) {
	env := &Env{Pool: pool.New(pool.Options{})}
	cfg := &Config{}
	cfg.RateLimit.ApplyDefaults()
	l1, l2 := env.Pool.NewLease(), env.Pool.NewLease()
	defer func() { _ = l1.Release(); _ = l2.Release() }()
	a, err := env.rateLimiting(l1, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.rateLimiting(l2, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("same settings: two limiters")
	}
	cfg.RateLimit.KeyPrefix = "other:"
	c, err := env.rateLimiting(l2, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c == a {
		t.Error("changed settings: the same limiter")
	}
}
