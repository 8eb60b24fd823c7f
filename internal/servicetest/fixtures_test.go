package servicetest

import (
	"context"
	"testing"

	"github.com/ext-authz/ext-authz/tokens"
)

// TestFixturesVerify: the fixtures are what the tests say they are: the
// key file accepts KeyAlice as alice with scope read, and the minted
// quickstart tokens verify against the quickstart keys.
func TestFixturesVerify(t *testing.T) {
	v, err := tokens.NewAPIKeyVerifier(tokens.APIKeyConfig{File: KeysFile(t, t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), KeyAlice)
	if err != nil || p.Subject != "alice" || len(p.Scopes) != 1 || p.Scopes[0] != "read" {
		t.Fatalf("KeyAlice: %+v, %v", p, err)
	}
	if _, err := v.Verify(context.Background(), "not-a-key"); err == nil {
		t.Fatal("an unknown key verified")
	}

	jv, err := tokens.NewJWTVerifier(tokens.JWTConfig{Issuers: []tokens.IssuerConfig{{
		Issuer: "https://issuer.quickstart.example", Audiences: []string{"quickstart"}, JWKSFile: QuickstartKeys() + "jwks.json",
	}}}, tokens.JWTOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct{ file, kid string }{{"jwt-rs256.pem", "dev-rs256-1"}, {"jwt-es256.pem", "dev-es256-1"}} {
		if p, err := jv.Verify(context.Background(), MintJWT(t, k.file, k.kid, "quickstart", "bob")); err != nil || p.Subject != "bob" {
			t.Errorf("%s: %+v, %v", k.file, p, err)
		}
	}
}
