package tokens

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// TestRevocationIDsAreStrings: records name a jti or sid as a string, and
// the verifiers read only string claims, so a credential whose jti or sid
// is a number (or any other JSON type) could never be revoked by it; a
// ticket with a numeric jti was revoked only by its payload digest, though
// the layout says its jti is its id. Such credentials are malformed.
func TestRevocationIDsAreStrings(t *testing.T) {
	rf := newRevFixture(t)
	ctx := context.Background()

	fx := newJWTFixture(t)
	jv, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{{Issuer: testIssuer, Audiences: []string{"api"}, JWKSFile: writeFile(t, "jwks.json", jwksJSON(jwk("ec", fx.keys.ec)))}}},
		JWTOptions{Options: rf.opts()})
	if err != nil {
		t.Fatal(err)
	}
	jwtWith := func(kv ...any) string {
		return mint(t, "ES256", "ec", fx.keys.ec, withClaims(claimsAt(testIssuer), append([]any{"sub", "alice"}, kv...)...))
	}
	tx := newTicketFixture(t)
	tv, err := NewTicketVerifier(TicketConfig{Keys: []TicketKeyConfig{{ID: "k1", File: writeFile(t, "k1.key", []byte(base64.StdEncoding.EncodeToString(getKeys(t).hmac)))}}}, rf.opts())
	if err != nil {
		t.Fatal(err)
	}
	ticketWith := func(extra map[string]any) string {
		c := validTicket()
		c.Extra = extra
		return tx.sign(t, "k1", c)
	}
	exp := t0.Add(2 * time.Hour).Unix()
	for _, r := range []revocation.Record{
		{Kind: revocation.KindJTI, ID: "42", At: exp}, {Kind: revocation.KindSID, ID: "7", At: exp},
		{Kind: revocation.KindTicket, ID: "42", At: exp},
	} {
		rf.revoke(t, r)
	}
	for _, c := range []struct {
		name string
		v    interface {
			Verify(context.Context, string) (Principal, error)
		}
		tok string
	}{
		{"jwt numeric jti", jv, jwtWith("jti", 42)},
		{"jwt numeric sid", jv, jwtWith("jti", "j", "sid", 7)},
		{"jwt array jti", jv, jwtWith("jti", []any{"42"})},
		{"ticket numeric jti", tv, ticketWith(map[string]any{"jti": 42})},
		{"ticket numeric sid", tv, ticketWith(map[string]any{"sid": 7})},
		{"ticket bool jti", tv, ticketWith(map[string]any{"jti": true})},
	} {
		if _, err := c.v.Verify(ctx, c.tok); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", c.name, err)
		}
	}
	// As strings they are revoked by those records.
	for name, tok := range map[string]string{"jwt jti": jwtWith("jti", "42"), "jwt sid": jwtWith("sid", "7")} {
		_, err := jv.Verify(ctx, tok)
		wantRevoked(t, name, err)
	}
	_, err = tv.Verify(ctx, ticketWith(map[string]any{"jti": "42"}))
	wantRevoked(t, "ticket jti", err)
	_, err = jv.Verify(ctx, jwtWith("jti", "other", "sid", "other"))
	wantAccepted(t, "jwt with other string ids", err)
}
