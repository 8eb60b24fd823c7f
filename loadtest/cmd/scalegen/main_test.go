package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/tokens"
)

// generated decodes the generated config's policy and rate-limit files.
type generated struct {
	Authenticators []struct {
		Name   string `yaml:"name"`
		APIKey *struct {
			File string `yaml:"file"`
		} `yaml:"api_key"`
	} `yaml:"authenticators"`
	RateLimit *struct {
		Files   []string `yaml:"files"`
		Backend string   `yaml:"backend"`
	} `yaml:"rate_limit"`
	Policy struct {
		Rules []struct {
			Name  string `yaml:"name"`
			Match struct {
				Hosts []string          `yaml:"hosts"`
				Path  map[string]string `yaml:"path"`
			} `yaml:"match"`
			Authenticators []string `yaml:"authenticators"`
		} `yaml:"rules"`
	} `yaml:"policy"`
}

func generate(t *testing.T, kind string, n int, extra ...string) (string, generated) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), kind)
	if err := run(append([]string{"-kind", kind, "-n", strconv.Itoa(n), "-dir", dir}, extra...), io.Discard); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var g generated
	if err := yaml.Unmarshal(data, &g); err != nil {
		t.Fatalf("config.yaml: %v\n%s", err, data)
	}
	return dir, g
}

// TestRules: N rules, the last the one the run's request (example.com,
// /api/) matches, and no filler that matches it first.
func TestRules(t *testing.T) {
	for _, n := range []int{2, 10, 1000} {
		_, g := generate(t, "rules", n)
		rules := g.Policy.Rules
		if len(rules) != n {
			t.Fatalf("n=%d: %d rules", n, len(rules))
		}
		last := rules[n-1]
		if last.Name != "api" || last.Match.Path["prefix"] != "/api/" || last.Authenticators[0] != "jwt" {
			t.Errorf("n=%d: last rule %+v, want the api rule", n, last)
		}
		kinds := map[string]int{}
		for _, r := range rules[:n-1] {
			for k, v := range r.Match.Path {
				kinds[k]++
				if strings.HasPrefix("/api/orders", strings.Trim(v, "^")) && k == "prefix" {
					t.Errorf("filler %s (%s %q) matches the run's request", r.Name, k, v)
				}
			}
		}
		if n >= 10 && (kinds["prefix"] == 0 || kinds["exact"] == 0 || kinds["regex"] == 0) {
			t.Errorf("n=%d: filler path kinds %v, want prefix, exact and regex", n, kinds)
		}
	}
}

// TestKeys loads the generated key file with the service's own verifier
// and verifies every key of the pool; a key not in the file fails.
func TestKeys(t *testing.T) {
	dir, g := generate(t, "keys", 5000, "-pool-size", "100")
	if len(g.Authenticators) != 2 || g.Authenticators[1].APIKey == nil {
		t.Fatalf("authenticators %+v, want jwt and api-keys", g.Authenticators)
	}
	if last := g.Policy.Rules[len(g.Policy.Rules)-1]; last.Authenticators[0] != "api-keys" {
		t.Errorf("the api rule authenticates with %v, want api-keys", last.Authenticators)
	}
	v, err := tokens.NewAPIKeyVerifier(tokens.APIKeyConfig{File: g.Authenticators[1].APIKey.File})
	if err != nil {
		t.Fatal(err)
	}
	pool := readLines(t, filepath.Join(dir, "apikey-pool.txt"))
	if len(pool) != 100 || pool[0] != Key(4999) {
		t.Fatalf("pool of %d keys starting %q, want 100 starting with the last key", len(pool), pool[0])
	}
	seen := map[string]bool{}
	for _, k := range pool {
		p, err := v.Verify(context.Background(), k)
		if err != nil {
			t.Fatalf("pool key %s: %v", k, err)
		}
		if seen[p.Subject] {
			t.Errorf("subject %s twice in the pool", p.Subject)
		}
		seen[p.Subject] = true
	}
	if _, err := v.Verify(context.Background(), Key(5000)); err == nil {
		t.Error("a key beyond the file verified")
	}
}

// TestSmallPool: the pool never holds more keys than the file.
func TestSmallPool(t *testing.T) {
	dir, _ := generate(t, "keys", 10)
	pool := readLines(t, filepath.Join(dir, "apikey-pool.txt"))
	if len(pool) != 10 {
		t.Errorf("pool of %d keys from a file of 10", len(pool))
	}
}

// TestDescriptors loads the generated rate-limit file with the service's
// own loader: N entries, and the run's two descriptors find their limits.
func TestDescriptors(t *testing.T) {
	dir, g := generate(t, "descriptors", 1000)
	if g.RateLimit == nil || g.RateLimit.Backend != "memory" {
		t.Fatalf("rate_limit %+v, want the memory backend", g.RateLimit)
	}
	data, err := os.ReadFile(filepath.Join(dir, "ratelimit", "loadtest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Descriptors []any `yaml:"descriptors"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil || len(f.Descriptors) != 1000 {
		t.Fatalf("%d top-level entries (%v), want 1000", len(f.Descriptors), err)
	}
	rules, err := envoyconfig.Load(g.RateLimit.Files)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give []ratelimit.Entry
		want uint32 // requests per unit; 0: no limit
	}{
		{[]ratelimit.Entry{{Key: "generic_key", Value: "limited"}, {Key: "user", Value: "user-1"}}, 1000},
		{[]ratelimit.Entry{{Key: "generic_key", Value: "limited-global"}}, 10000000},
		{[]ratelimit.Entry{{Key: "generic_key", Value: "filler-3"}, {Key: "user", Value: "u"}}, 100},
		{[]ratelimit.Entry{{Key: "generic_key", Value: "wild-7-x"}}, 100},
		{[]ratelimit.Entry{{Key: "generic_key", Value: "nothing"}}, 0},
	}
	for _, tt := range tests {
		l := rules.Match("loadtest", &ratelimit.Descriptor{Entries: tt.give})
		var got uint32
		if l != nil {
			got = l.Requests
		}
		if got != tt.want {
			t.Errorf("Match(%v) = %d per unit, want %d", tt.give, got, tt.want)
		}
	}
}

func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-kind", "rules", "-n", "1", "-dir", dir},
		{"-kind", "rules", "-n", "10"},
		{"-kind", "bogus", "-n", "10", "-dir", dir},
		{"-kind", "keys", "-n", "10", "-dir", dir, "-pool-size", "0"},
		{"-kind", "rules", "-n", "10", "-dir", dir, "extra"},
	} {
		if err := run(args, io.Discard); err == nil {
			t.Errorf("run(%q): no error", args)
		}
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
