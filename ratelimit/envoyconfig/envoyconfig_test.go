package envoyconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/ratelimit"
)

func load(t *testing.T) *Rules {
	t.Helper()
	r, err := Load([]string{"../testdata/gateway.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func desc(kv ...string) *ratelimit.Descriptor {
	d := &ratelimit.Descriptor{Hits: 1}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, ratelimit.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func TestMatch(t *testing.T) {
	r := load(t)
	tests := []struct {
		name   string
		domain string
		give   *ratelimit.Descriptor
		want   *ratelimit.Limit // nil: no limit
	}{
		{"key without value matches any value", "gateway", desc("user", "alice"),
			&ratelimit.Limit{Name: "per-user", Policy: "per-user", Requests: 100, Unit: ratelimit.Minute}},
		{"remote address", "gateway", desc("remote_address", "10.0.0.1"),
			&ratelimit.Limit{Policy: "gateway.remote_address", Requests: 60, Unit: ratelimit.Minute}},
		{"nested", "gateway", desc("route", "search", "user", "bob"),
			&ratelimit.Limit{Name: "search-per-user", Policy: "search-per-user", Requests: 5, Unit: ratelimit.Second}},
		{"nested parent alone has no limit", "gateway", desc("route", "search"), nil},
		{"nested with other route value", "gateway", desc("route", "other", "user", "bob"), nil},
		{"more entries than config depth", "gateway", desc("user", "alice", "extra", "x"), nil},
		{"unlimited value", "gateway", desc("user", "batch-job"),
			&ratelimit.Limit{Policy: "gateway.user", Unlimited: true}},
		{"wildcard", "gateway", desc("tenant", "trial-42"),
			&ratelimit.Limit{Policy: "gateway.tenant", Requests: 1000, Unit: ratelimit.Hour}},
		{"wildcard miss", "gateway", desc("tenant", "paid-42"), nil},
		{"shadow", "gateway", desc("shadow_route", "x"),
			&ratelimit.Limit{Policy: "gateway.shadow_route", Requests: 10, Unit: ratelimit.Minute, Shadow: true}},
		{"replaces", "gateway", desc("plan", "vip"),
			&ratelimit.Limit{Name: "vip", Policy: "vip", Requests: 1000, Unit: ratelimit.Minute, Replaces: []string{"per-user"}}},
		{"unknown domain", "nope", desc("user", "alice"), nil},
		{"unknown key", "gateway", desc("colour", "red"), nil},
		{"no entries", "gateway", desc(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Match(tt.domain, tt.give)
			if again := r.Match(tt.domain, tt.give); again != got {
				t.Fatalf("second Match = %+v, first %+v (not the same shared Limit)", again, got)
			}
			if (got == nil) != (tt.want == nil) {
				t.Fatalf("Match = %+v, want %+v", got, tt.want)
			}
			if got == nil {
				return
			}
			if got.Name != tt.want.Name || got.Policy != tt.want.Policy || got.Requests != tt.want.Requests ||
				got.Unit != tt.want.Unit || got.Unlimited != tt.want.Unlimited || got.Shadow != tt.want.Shadow ||
				strings.Join(got.Replaces, ",") != strings.Join(tt.want.Replaces, ",") {
				t.Errorf("Match = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPolicyNeverHoldsRequestValues(t *testing.T) {
	r := load(t)
	l := r.Match("gateway", desc("remote_address", "secret-value"))
	if l == nil || strings.Contains(l.Policy, "secret") {
		t.Fatalf("policy %+v", l)
	}
}

func TestShareThreshold(t *testing.T) {
	r, err := Parse([]File{{Name: "s.yaml", Content: []byte(`
domain: d
descriptors:
  - key: path
    value: /files/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 3}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	l := r.Match("d", desc("path", "/files/a"))
	if l == nil || len(l.SharedValues) != 1 || l.SharedValues[0] != "/files/*" {
		t.Fatalf("Match = %+v, want SharedValues [/files/*]", l)
	}
}

func TestQuotaModeAllows(t *testing.T) {
	r, err := Parse([]File{{Name: "q.yaml", Content: []byte(`
domain: d
descriptors:
  - key: k
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 3}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	if l := r.Match("d", desc("k", "v")); l == nil || !l.Shadow {
		t.Fatalf("Match = %+v, want a shadow (report-only) limit", l)
	}
}

func TestBadFiles(t *testing.T) {
	tests := []struct {
		give string
		want string // substring of the error, which always starts with the file
	}{
		{"unit.yaml", "unit.yaml:5: descriptors[0].rate_limit.unit: invalid rate limit unit 'fortnight'"},
		{"empty_key.yaml", "empty_key.yaml:5: descriptors[0].descriptors[0].key: descriptor has empty key"},
		{"unknown_key.yaml", `unknown_key.yaml:4: descriptors[0]: unknown field "rate_limt" (did you mean "rate_limit"?)`},
		{"unknown_key_nested.yaml", `unknown_key_nested.yaml:7: descriptors[0].rate_limit: unknown field "shadow" ("shadow_mode" is a field of "descriptors[0]": it is indented too far)`},
		{"unknown_key_child.yaml", `unknown_key_child.yaml:5: descriptors[0]: unknown field "descriptor" (did you mean "descriptors"?)`},
		{"wrong_type.yaml", `wrong_type.yaml:6: descriptors[0].rate_limit.requests_per_unit: want a non-negative integer (32 bits), got !!str "lots"`},
		{"float.yaml", `float.yaml:4: descriptors[0].rate_limit.requests_per_unit: want a string, an integer or true/false, got !!float 1.5 (error checking config)`},
		{"wrong_shape.yaml", `wrong_shape.yaml:3: descriptors: want a list, got a mapping`},
		{"misindented.yaml", `misindented.yaml:6: descriptors[0].rate_limit.unit: invalid rate limit unit ''
../testdata/bad/misindented.yaml:4: descriptors[0]: unknown field "unit" ("unit" is a field of "descriptors[0].rate_limit": indent it under "rate_limit")`},
		{"duplicate.yaml", "duplicate.yaml:5: descriptors[1].key: duplicate descriptor composite key 'bad.user'"},
		{"no_domain.yaml", "no_domain.yaml:1: domain: config file cannot have empty domain"},
		{"syntax.yaml", "syntax.yaml:2: did not find expected '-' indicator"},
		{"unlimited_with_unit.yaml", "unlimited_with_unit.yaml:6: descriptors[0].rate_limit.unit: should not specify rate limit unit when unlimited"},
		{"replaces_self.yaml", "replaces_self.yaml:9: descriptors[0].rate_limit.replaces[0].name: replaces should not contain name of same descriptor"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			path := filepath.Join("../testdata/bad", tt.give)
			_, err := Load([]string{path})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n %v\nwant it to start with %s and contain\n %s", err, path, tt.want)
			}
		})
	}
}

func TestDuplicateDomainAcrossFiles(t *testing.T) {
	f := File{Name: "a.yaml", Content: []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")}
	g := f
	g.Name = "b.yaml"
	_, err := Parse([]File{f, g})
	if err == nil || !strings.Contains(err.Error(), `b.yaml:1: domain: domain "d" is also defined in a.yaml`) {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"a.yaml":    "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
		"b.yml":     "domain: b\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
		"notes.txt": "not yaml",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Domains(), ","); got != "a,b" {
		t.Errorf("Domains = %s, want a,b", got)
	}
	if !r.HasDomain("b") || r.HasDomain("c") {
		t.Error("HasDomain wrong")
	}
	if _, err := Load([]string{filepath.Join(dir, "missing")}); err == nil {
		t.Error("missing path: no error")
	}
}

// FuzzParse feeds arbitrary content: Parse must return (rules or an error)
// and never let the library's panics escape.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"../testdata/gateway.yaml", "../testdata/bad/unit.yaml", "../testdata/bad/syntax.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("domain: d\ndescriptors:\n  - key: '*'\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		r, err := Parse([]File{{Name: "f.yaml", Content: content}})
		if err == nil {
			r.Match("d", desc("k", "v"))
		} else if !strings.HasPrefix(err.Error(), "f.yaml") && !strings.HasPrefix(err.Error(), "rate limit config") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

// TestExampleFiles: the shipped example files load and define what the
// quickstart policy names.
func TestExampleFiles(t *testing.T) {
	r, err := Load([]string{"../../examples/quickstart/ratelimit"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.HasDomain("quickstart") {
		t.Fatalf("domains %v", r.Domains())
	}
	for _, tt := range []struct {
		give *ratelimit.Descriptor
		want string // policy, or "" for none, or "unlimited"
	}{
		{desc("remote_address", "192.0.2.1"), "quickstart.remote_address"},
		{desc("route", "api", "user", "alice"), "api-per-user"},
		{desc("route", "search", "user", "alice"), "search-per-user"},
		{desc("route", "admin", "user", "admin"), "unlimited"},
		{desc("route", "admin", "user", "alice"), "admin-per-user"},
		{desc("route", "app", "user", "alice"), ""},
	} {
		got := r.Match("quickstart", tt.give)
		switch {
		case tt.want == "" && got != nil, tt.want != "" && got == nil:
			t.Errorf("%v: %+v, want %q", tt.give.Entries, got, tt.want)
		case tt.want == "unlimited" && !got.Unlimited:
			t.Errorf("%v: %+v, want unlimited", tt.give.Entries, got)
		case got != nil && tt.want != "unlimited" && got.Policy != tt.want:
			t.Errorf("%v: policy %q, want %q", tt.give.Entries, got.Policy, tt.want)
		}
	}
}

// TestLookalikeValues: key_value lookups never confuse a nested
// descriptor with a flat one whose value holds the separator.
func TestLookalikeValues(t *testing.T) {
	r := load(t)
	if l := r.Match("gateway", desc("route", "search", "user", "x")); l == nil || l.Name != "search-per-user" {
		t.Fatalf("%+v", l)
	}
	if l := r.Match("gateway", desc("route", "search_user", "x", "")); l != nil {
		t.Fatalf("%+v", l)
	}
}
