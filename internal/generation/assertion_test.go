package generation

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/tokens/assertion"
)

// compileText loads and compiles a config as check-config does and
// returns its error, annotated with file and line.
func compileText(t *testing.T, text string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	servicetest.WriteFile(t, path, text)
	cfg, err := Load(path, func(string) string { return "" })
	if err != nil {
		return err
	}
	g, err := Compile(&Env{Pool: pool.New(pool.Options{})}, cfg)
	if err != nil {
		return cfg.Annotate(err)
	}
	return g.Release()
}

// TestAssertionConfigErrors: every mistake in upstream_assertion (and in a
// rule's assertion_audience, and strip_credentials) is refused as
// file:line: field.path: message.
func TestAssertionConfigErrors(t *testing.T) {
	dir := t.TempDir()
	keys := servicetest.KeysFile(t, dir)
	pub := filepath.Join(dir, "pub.pem")
	k, err := assertion.GenerateKey(assertion.ES256)
	if err != nil {
		t.Fatal(err)
	}
	servicetest.WriteFile(t, pub, string(k.PublicPEM()))
	base := servicetest.BaseConfig(keys, "")
	section := func(body string) string { return base + "upstream_assertion:\n" + body }
	ok := "  issuer: https://ext-authz.example\n  audience: upstream\n"
	tests := []struct {
		name string
		give string
		want string // the error holds this
	}{
		{"no issuer", section("  audience: a\n"), ": upstream_assertion.issuer: required"},
		{"no audience", section("  issuer: i\n"), ": upstream_assertion.audience: required"},
		{"lifetime too long", section(ok + "  lifetime: 2h\n"), ": upstream_assertion.lifetime: 2h0m0s"},
		{"header is the api key source", section(ok + "  header: X-API-Key\n"), ": upstream_assertion.header: \"X-API-Key\" is the credential source of authenticators[0]"},
		{"header is an identity header", section(ok + "  header: x-auth-team\n"), ": upstream_assertion.header: \"x-auth-team\" is also an identity header"},
		{"header spelled with underscore", section(ok + "  header: x_assertion\n"), ": upstream_assertion.header: \"x_assertion\": use '-'"},
		{"header cookie", section(ok + "  header: Cookie\n"), ": upstream_assertion.header"},
		{"reserved claim", section(ok + "  claims: [email, sub]\n"), ": upstream_assertion.claims[1]: \"sub\" is set by the service itself"},
		{"host audience not canonical", section(ok + "  audiences: {Shop.Example.com: x}\n"), ": upstream_assertion.audiences.Shop.Example.com"},
		{"bad algorithm", section(ok + "  keys: {algorithm: RS256}\n"), ": upstream_assertion.keys.algorithm: \"RS256\" is not ES256 or EdDSA"},
		{"rotation too short", section(ok + "  keys: {rotation_period: 5m}\n"), ": upstream_assertion.keys.rotation_period: 5m0s: at least 1m and 10 lifetimes"},
		{"published without signing", section(ok + "  keys: {published_key_files: [" + pub + "]}\n"), ": upstream_assertion.keys.published_key_files: needs keys.signing_key_file"},
		{"signing key missing", section(ok + "  keys: {signing_key_file: " + filepath.Join(dir, "nope.pem") + "}\n"), ": upstream_assertion.keys.signing_key_file: open"},
		{"signing key public", section(ok + "  keys: {signing_key_file: " + pub + "}\n"), ": upstream_assertion.keys.signing_key_file: " + pub + " holds a public key"},
		{"signing key garbage", section(ok + "  keys: {signing_key_file: " + keys + "}\n"), ": upstream_assertion.keys.signing_key_file: " + keys + ": no PEM block"},
		{"rule audience without section", strings.Replace(base, "      authenticators: [keys]\n      require", "      authenticators: [keys]\n      assertion_audience: admin\n      require", 1),
			": policy.rules[1].assertion_audience: no upstream_assertion is configured"},
		{"rule audience on allow", strings.Replace(section(ok), "      action: allow\n", "      action: allow\n      assertion_audience: x\n", 1),
			": policy.rules[0].assertion_audience: only an authenticate rule"},
		{"strip mode", strings.Replace(base, "  realm: e2e\n", "  realm: e2e\n  strip_credentials: none\n", 1),
			": policy.strip_credentials: \"none\" is not one of rule, verified, all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := compileText(t, tt.give)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "config.yaml:") {
				t.Errorf("error %q\nwant it to hold %q and the file:line", err, tt.want)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Error("key material in the error")
			}
		})
	}
	if err := compileText(t, section(ok+"  keys: {algorithm: EdDSA, rotation_period: 1h}\n")); err != nil {
		t.Errorf("a valid section refused: %v", err)
	}
}

// TestAssertionHeaderRedacted: the assertion is a bearer token for its
// audience; the logger redacts its header like a credential's.
func TestAssertionHeaderRedacted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	servicetest.WriteFile(t, path, servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), "")+
		"upstream_assertion: {issuer: i, audience: a, header: x-signed-identity}\n")
	cfg, err := Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if keys := cfg.CredentialKeys(); !slices.Contains(keys, "x-signed-identity") {
		t.Errorf("credential keys %v lack the assertion header", keys)
	}
}
