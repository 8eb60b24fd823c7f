package generation

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// writeKeys writes an API key file with one key per subject.
func writeKeys(t *testing.T, path string, subjects []string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("keys:\n")
	for _, s := range subjects {
		sum := sha256.Sum256([]byte("key-of-" + s))
		fmt.Fprintf(&b, "  - subject: %s\n    sha256: %s\n", s, hex.EncodeToString(sum[:]))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

// changes turns DescribeChanges' key/value list into a map.
func changes(t *testing.T, old, next *Generation) map[string]any {
	t.Helper()
	kv := DescribeChanges(old, next)
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// compiler compiles the config file at cfgPath, as a reload does, into
// generations that share one pool; each is released when the test ends.
func compiler(t *testing.T, cfgPath string) func() *Generation {
	env := &Env{Pool: pool.New(pool.Options{})}
	return func() *Generation {
		t.Helper()
		cfg, err := Load(cfgPath, os.Getenv)
		if err != nil {
			t.Fatal(err)
		}
		g, err := Compile(env, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Release() })
		return g
	}
}

// TestReloadKeyDiff: the reload log's key names come from the verifiers
// (the key file is parsed once, by the verifier that is built), a reload
// that leaves the key file alone shares the verifier and lists no key, and
// a large change is listed up to maxLoggedKeys names with its total.
func TestReloadKeyDiff(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(benchConfig(keys, 2)), 0o600); err != nil {
		t.Fatal(err)
	}
	compile := compiler(t, cfgPath)

	writeKeys(t, keys, names("u", 120))
	g1 := compile()
	g2 := compile()
	if g1.Auths[0].Authenticator.Verifier != g2.Auths[0].Authenticator.Verifier {
		t.Fatal("an unchanged key file built a second verifier (it was parsed again)")
	}
	if c := changes(t, g1, g2); len(c) != 0 {
		t.Fatalf("unchanged reload logs %v, want nothing", c)
	}

	// Half the subjects replaced: 60 added, 60 removed, 50 of each named.
	writeKeys(t, keys, append(names("u", 60), names("v", 60)...))
	g3 := compile()
	if g3.Auths[0].Authenticator.Verifier == g2.Auths[0].Authenticator.Verifier {
		t.Fatal("a changed key file kept the old verifier")
	}
	c := changes(t, g2, g3)
	for _, dir := range []struct{ key, first string }{{"keys_added", "keys: subject v000"}, {"keys_removed", "keys: subject u060"}} {
		if got := c[dir.key+"_total"]; got != 60 {
			t.Errorf("%s_total = %v, want 60", dir.key, got)
		}
		list, _ := c[dir.key].([]string)
		if len(list) != maxLoggedKeys+1 || list[0] != dir.first || list[maxLoggedKeys] != "..." {
			t.Errorf("%s = %d names %v, want %d names from %q and \"...\"", dir.key, len(list), list, maxLoggedKeys, dir.first)
		}
	}

	// A small change is listed whole, without a total.
	writeKeys(t, keys, append(names("u", 60), names("v", 61)...))
	c = changes(t, g3, compile())
	if list, _ := c["keys_added"].([]string); len(list) != 1 || list[0] != "keys: subject v060" || c["keys_added_total"] != nil || c["keys_removed"] != nil {
		t.Errorf("one key added: %v", c)
	}
}

// TestReloadJWKSFileKeyDiff: the kids a reload names are those each
// generation's verifier read. Reading the JWKS file when the log line is
// written would read the new file for the old generation too, and a
// rotation would log no key at all.
func TestReloadJWKSFileKeyDiff(t *testing.T) {
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := "authenticators:\n  - name: jwt\n    source: {authorization: Bearer}\n    jwt:\n      issuers:\n" +
		"        - {issuer: \"https://issuer.example\", jwks_file: \"" + jwks + "\"}\n" +
		"policy:\n  rules:\n    - {name: r, match: {path: {prefix: /}}, action: allow}\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := os.ReadFile(servicetest.QuickstartKeys() + "jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(all, &set); err != nil || len(set.Keys) < 2 {
		t.Fatalf("quickstart JWKS: %v, %d keys", err, len(set.Keys))
	}
	writeSet := func(keys ...json.RawMessage) {
		t.Helper()
		b, err := json.Marshal(map[string]any{"keys": keys})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(jwks, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	compile := compiler(t, cfgPath)

	writeSet(set.Keys[0])
	g1 := compile()
	writeSet(set.Keys[1])
	g2 := compile()
	c := changes(t, g1, g2)
	added, _ := c["keys_added"].([]string)
	removed, _ := c["keys_removed"].([]string)
	if len(added) != 1 || added[0] != "jwt: https://issuer.example kid dev-es256-1" ||
		len(removed) != 1 || removed[0] != "jwt: https://issuer.example kid dev-rs256-1" {
		t.Fatalf("rotation logs added %v, removed %v; want dev-es256-1 added and dev-rs256-1 removed", added, removed)
	}
}

// TestDescribeCountsCompiledRules: the start-up summary counts the rules
// after the compiled config has dropped them.
func TestDescribeCountsCompiledRules(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	writeKeys(t, keys, names("u", 1))
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(benchConfig(keys, 7)), 0o600); err != nil {
		t.Fatal(err)
	}
	g := compiler(t, cfgPath)()
	d := g.Config.Describe()
	found := false
	for i := 0; i+1 < len(d); i += 2 {
		if d[i] == "rules" {
			found = true
			if d[i+1] != 7 {
				t.Fatalf("rules = %v, want 7 (the compiled config dropped them)", d[i+1])
			}
		}
	}
	if !found {
		t.Fatalf("no rules in the summary %v", d)
	}
	if g.Config.Policy.Rules != nil {
		t.Fatal("the compiled config still holds its rules")
	}
}
