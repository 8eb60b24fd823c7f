package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/tokens"
)

const quickstartKeys = "../../examples/quickstart/keys/"

func mintCmd(t *testing.T, args ...string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), append([]string{"token", "mint"}, args...), &out, &errOut, func(string) string { return "" }); err != nil {
		t.Fatalf("token mint %v: %v (%s)", args, err, errOut.String())
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
		{"no subcommand", []string{"token"}, "token needs mint or jwks"},
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
			var out, errOut bytes.Buffer
			err := run(context.Background(), tt.give, &out, &errOut, func(string) string { return "" })
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a usage error containing %q", err, tt.want)
			}
		})
	}
	// A key of the wrong kind is a plain error naming the file.
	err := run(context.Background(), []string{"token", "mint", "--kind", "udb-ticket", "--kid", "k", "--key-file", quickstartKeys + "jwt-rs256.pem"}, &bytes.Buffer{}, &bytes.Buffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), "jwt-rs256.pem") {
		t.Fatalf("wrong key kind: %v", err)
	}
}
