package tokens

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// TestLeewayWithinRevocationGrace: a credential record lives until the
// credential's exp plus revocation.ExpiryGrace, so a verifier must not
// accept a credential past that: a leeway beyond the grace would let a
// revoked JWT or ticket through again once its record is swept.
func TestLeewayWithinRevocationGrace(t *testing.T) {
	key := writeFile(t, "k1.key", []byte(base64.StdEncoding.EncodeToString(getKeys(t).hmac)))
	for _, give := range []time.Duration{revocation.ExpiryGrace + time.Second, time.Hour} {
		tc := TicketConfig{Keys: []TicketKeyConfig{{ID: "k1", File: key}}, Leeway: give}
		if _, err := NewTicketVerifier(tc, Options{}); err == nil || !strings.Contains(err.Error(), "leeway") {
			t.Errorf("ticket leeway %s: err %v, want a leeway error", give, err)
		}
		jc := JWTConfig{Issuers: []IssuerConfig{{Issuer: "https://iss", JWKSFile: "x", Leeway: give}}}
		jc.ApplyDefaults()
		if err := jc.Validate(); err == nil || !strings.Contains(err.Error(), "issuers[0].leeway") {
			t.Errorf("jwt leeway %s: err %v, want an issuers[0].leeway error", give, err)
		}
	}

	// At the longest leeway allowed, a revoked ticket stays revoked up
	// to the last instant it would be accepted, after sweeps.
	rf := newRevFixture(t)
	fx := newTicketFixture(t)
	v, err := NewTicketVerifier(TicketConfig{Keys: []TicketKeyConfig{{ID: "k1", File: key}}, Leeway: revocation.ExpiryGrace}, rf.opts())
	if err != nil {
		t.Fatal(err)
	}
	c := validTicket()
	c.Extra = map[string]any{"jti": "late"}
	tok := fx.sign(t, "k1", c)
	rf.revoke(t, revocation.Record{Kind: revocation.KindTicket, ID: "late", At: c.Expiry.Unix()})
	for _, at := range []time.Duration{time.Second, revocation.ExpiryGrace - time.Second} {
		rf.clock.Advance(c.Expiry.Add(at).Sub(rf.clock.Now()))
		rf.list.Sweep(rf.clock.Now())
		_, err := v.Verify(context.Background(), tok)
		wantRevoked(t, "ticket "+at.String()+" past exp", err)
	}
}
