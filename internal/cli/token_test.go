package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/tokens"
)

const quickstartKeys = "../../examples/quickstart/keys/"

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mintCmd(t *testing.T, args ...string) []string {
	t.Helper()
	var out bytes.Buffer
	if err := Token(context.Background(), append([]string{"mint"}, args...), &out); err != nil {
		t.Fatalf("token mint %v: %v", args, err)
	}
	return strings.Fields(out.String())
}

func quickstartTicketVerifier(t *testing.T) *tokens.TicketVerifier {
	v, err := tokens.NewTicketVerifier(tokens.TicketConfig{Keys: []tokens.TicketKeyConfig{
		{ID: "dev-1", File: quickstartKeys + "ticket-hs256.key"},
		{ID: "dev-ed-1", Algorithm: "EdDSA", File: quickstartKeys + "ticket-ed25519.pub.pem"},
	}}, tokens.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenMintTickets(t *testing.T) {
	v := quickstartTicketVerifier(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"HS256", []string{"--key-file", quickstartKeys + "ticket-hs256.key", "--kid", "dev-1"}},
		{"EdDSA", []string{"--key-file", quickstartKeys + "ticket-ed25519.pem", "--kid", "dev-ed-1", "--alg", "EdDSA"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toks := mintCmd(t, append([]string{"--kind", "udb-ticket", "--count", "5", "--user-prefix", "load-", "--app", "shop", "--scope", "a b", "--ttl", "10m"}, tc.args...)...)
			if len(toks) != 5 {
				t.Fatalf("minted %d tokens, want 5", len(toks))
			}
			seen := map[string]bool{}
			for _, tok := range toks {
				p, err := v.Verify(context.Background(), tok)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(p.Subject, "load-") || p.AppID != "shop" || len(p.Scopes) != 2 || time.Until(p.Expiry) > 10*time.Minute {
					t.Errorf("principal = %+v", p)
				}
				seen[p.Subject] = true
			}
			if len(seen) != 5 {
				t.Errorf("distinct users = %d, want 5", len(seen))
			}
		})
	}
}

func TestTokenMintJWT(t *testing.T) {
	v, err := tokens.NewJWTVerifier(tokens.JWTConfig{Issuers: []tokens.IssuerConfig{{
		Issuer: "https://issuer.quickstart.example", Audiences: []string{"quickstart"}, JWKSFile: quickstartKeys + "jwks.json",
	}}}, tokens.JWTOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []struct{ file, kid string }{{"jwt-rs256.pem", "dev-rs256-1"}, {"jwt-es256.pem", "dev-es256-1"}} {
		toks := mintCmd(t, "--kind", "jwt", "--key-file", quickstartKeys+key.file, "--kid", key.kid,
			"--issuer", "https://issuer.quickstart.example", "--audience", "quickstart", "--subject", "alice", "--scope", "read")
		p, err := v.Verify(context.Background(), toks[0])
		if err != nil {
			t.Fatalf("%s: %v", key.file, err)
		}
		if p.Subject != "alice" || p.Method != tokens.MethodJWT || len(p.Scopes) != 1 {
			t.Errorf("principal = %+v", p)
		}
	}
}

func TestTokenMintUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"no subcommand", []string{"token"}, "token needs mint, jwks, revoke or status"},
		{"unknown subcommand", []string{"token", "burn"}, `unknown subcommand "burn"`},
		{"jwks without key", []string{"token", "jwks"}, "--key-file is required"},
		{"jwks with alg of another key", []string{"token", "jwks", "--key-file", quickstartKeys + "jwt-es256.pem", "--alg", "RS256"}, "holds an EC P-256 key"},
		{"no kind", []string{"token", "mint", "--key-file", "x"}, "--kind must be udb-ticket or jwt"},
		{"no key file", []string{"token", "mint", "--kind", "jwt"}, "--key-file is required"},
		{"subject with count", []string{"token", "mint", "--kind", "jwt", "--key-file", "x", "--subject", "a", "--count", "2"}, "--subject names one user"},
		{"ticket without kid", []string{"token", "mint", "--kind", "udb-ticket", "--key-file", "x"}, "--kid is required"},
		{"jwt without issuer", []string{"token", "mint", "--kind", "jwt", "--key-file", "x"}, "--issuer is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Token(context.Background(), tt.give[1:], &out)
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a usage error containing %q", err, tt.want)
			}
		})
	}
	// A key of the wrong kind is a plain error naming the file.
	err := Token(context.Background(), []string{"mint", "--kind", "udb-ticket", "--kid", "k", "--key-file", quickstartKeys + "jwt-rs256.pem"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "jwt-rs256.pem") {
		t.Fatalf("wrong key kind: %v", err)
	}
}

func TestDefaultAddr(t *testing.T) {
	for _, tt := range []struct{ give, want string }{
		{"", "127.0.0.1:8888"},
		{":9888", "127.0.0.1:9888"},
		{"0.0.0.0:9888", "127.0.0.1:9888"},
		{"[::]:9888", "127.0.0.1:9888"},
		{"10.0.0.1:9888", "10.0.0.1:9888"},
	} {
		if got := DefaultAddr(func(string) string { return tt.give }); got != tt.want {
			t.Errorf("%q: %q, want %q", tt.give, got, tt.want)
		}
	}
}

// TestTokenJWKSRoundTrip: a JWT minted with a key verifies against the JWK
// Set `token jwks` prints for it, for every key type, with the derived kid
// that `token mint` names when --kid is missing.
func TestTokenJWKSRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ name, keyFile, alg string }{
		{"rsa", quickstartKeys + "jwt-rs256.pem", ""},
		{"rsa-pss", quickstartKeys + "jwt-rs256.pem", "PS256"},
		{"ec", quickstartKeys + "jwt-es256.pem", ""},
		{"ed25519", quickstartKeys + "ticket-ed25519.pem", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Without --kid, mint refuses and names the thumbprint.
			mintArgs := []string{"token", "mint", "--kind", "jwt", "--key-file", tt.keyFile, "--issuer", "https://iss.test", "--subject", "u1"}
			if tt.alg != "" {
				mintArgs = append(mintArgs, "--alg", tt.alg)
			}
			err := Token(context.Background(), mintArgs[1:], &bytes.Buffer{})
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--kid is required") {
				t.Fatalf("mint without kid: %v", err)
			}
			_, kid, ok := strings.Cut(ue.Msg, "use --kid ")
			if !ok {
				t.Fatalf("no kid suggested: %v", err)
			}

			var set bytes.Buffer
			if err := Token(context.Background(), []string{"jwks", "--key-file", tt.keyFile}, &set); err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Keys []map[string]string `json:"keys"`
			}
			if err := json.Unmarshal(set.Bytes(), &doc); err != nil || len(doc.Keys) != 1 || doc.Keys[0]["kid"] != kid || doc.Keys[0]["d"] != "" {
				t.Fatalf("jwks %s: %v (want kid %s, no private part)", set.String(), err, kid)
			}
			jwksPath := filepath.Join(dir, tt.name+".json")
			writeFile(t, jwksPath, set.String())

			var tok bytes.Buffer
			if err := Token(context.Background(), append(mintArgs[1:], "--kid", kid), &tok); err != nil {
				t.Fatal(err)
			}
			cfg := tokens.JWTConfig{Issuers: []tokens.IssuerConfig{{Issuer: "https://iss.test", JWKSFile: jwksPath}}}
			cfg.ApplyDefaults()
			v, err := tokens.NewJWTVerifier(cfg, tokens.JWTOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p, err := v.Verify(context.Background(), strings.TrimSpace(tok.String()))
			if err != nil || p.Subject != "u1" {
				t.Fatalf("verify: %+v, %v", p, err)
			}
		})
	}
}

// TestTokenMintExplainsKeyMismatch: each key/algorithm mismatch is a usage
// error that names the key the file holds and the algorithm that fits it.
func TestTokenMintExplainsKeyMismatch(t *testing.T) {
	for _, tt := range []struct {
		name, keyFile, alg string
		want               []string
	}{
		{"ES256 with RSA", "jwt-rs256.pem", "ES256", []string{"--alg ES256 needs an EC P-256 key", "holds an RSA 2048-bit key", "use --alg RS256"}},
		{"RS256 with EC", "jwt-es256.pem", "RS256", []string{"--alg RS256 needs an RSA key", "holds an EC P-256 key", "use --alg ES256"}},
		{"ES384 with P-256", "jwt-es256.pem", "ES384", []string{"needs an EC P-384 key", "holds an EC P-256 key"}},
		{"EdDSA with RSA", "jwt-rs256.pem", "EdDSA", []string{"needs an Ed25519 key", "use --alg RS256"}},
		{"PS256 with Ed25519", "ticket-ed25519.pem", "PS256", []string{"needs an RSA key", "holds an Ed25519 key", "use --alg EdDSA"}},
		{"HS256 with a PEM key", "jwt-rs256.pem", "HS256", []string{"needs a base64 secret", "holds a PEM key"}},
		{"secret without HS alg", "ticket-hs256.key", "", []string{"holds no PEM key", "--alg HS256"}},
		{"unknown alg", "jwt-rs256.pem", "RS1", []string{`--alg "RS1" is not one of`}},
		{"none", "jwt-rs256.pem", "none", []string{`--alg "none" is not one of`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"token", "mint", "--kind", "jwt", "--issuer", "i", "--kid", "k", "--key-file", quickstartKeys + tt.keyFile}
			if tt.alg != "" {
				args = append(args, "--alg", tt.alg)
			}
			var out bytes.Buffer
			err := Token(context.Background(), args[1:], &out)
			if ExitCode(err) != 2 || out.Len() != 0 {
				t.Fatalf("exit %d (%v), stdout %q; want a usage error and no token", ExitCode(err), err, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\ndoes not say %q", err, w)
				}
			}
		})
	}
	// An HS256 jwt needs a kid too.
	err := Token(context.Background(), []string{"mint", "--kind", "jwt", "--issuer", "i", "--alg", "HS256", "--key-file", quickstartKeys + "ticket-hs256.key"}, &bytes.Buffer{})
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "--kid is required") {
		t.Errorf("HS256 without kid: %v", err)
	}
}
