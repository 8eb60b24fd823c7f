package tokens

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// The fuzz targets check the parsers' promises on arbitrary input: no panic,
// every rejection is a CredentialError (local keys only, so nothing can be
// undecided), no error message repeats the input, and nothing but the
// seeds' own valid tokens (or a token that still carries a valid signature)
// is accepted. They run their seed corpus as ordinary tests; run them with
// -fuzz=FuzzTicket or -fuzz=FuzzJWT to explore.

func FuzzTicket(f *testing.F) {
	fx := newTicketFixture(f)
	good := fx.sign(f, "k1", validTicket())
	ed := fx.sign(f, "ed", validTicket())
	for _, s := range []string{
		good, ed, "", TicketPrefix, TicketPrefix + "...", TicketPrefix + ".k1..", good + ".", good[:len(good)-1],
		strings.Replace(good, ".k1.", ".old.", 1), strings.Replace(good, ".k1.", ".zz.", 1),
		TicketPrefix + ".k1.e30.AAAA", "eyJhbGciOiJub25lIn0.e30.", "udbt1.k1.\x00.\xff",
		// the strict classes of jose.go, validly signed
		resignRaw(fx, b64([]byte(`{"uid":"u","uid":"admin","iat":1795000000,"exp":1795003600}`))),
		resignRaw(fx, b64([]byte(`{"uid":"u","iat":1795000000,"exp":1795003600,"nbf":1e19}`))),
		resignRaw(fx, "eyJ1aWQiOiJ1IiwiaWF0IjoxNzk1MDAwMDAwLCJleHAiOjE3OTUwMDM2MDB\n9"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := fx.v.Verify(context.Background(), tok)
		if err == nil {
			// Accepting is only right for a ticket whose signature
			// verifies: re-check it independently of the cache.
			if _, _, err := fx.v.verify(tok, fx.clock.Now()); err != nil {
				t.Fatalf("accepted %q (principal %+v) that fails a fresh check: %v", tok, p, err)
			}
			return
		}
		checkRejection(t, tok, err)
	})
}

func FuzzJWT(f *testing.F) {
	fx := newJWTFixture(f)
	k := fx.keys
	seeds := []string{
		mint(f, "RS256", "rsa", k.rsa, claimsAt(testIssuer)),
		mint(f, "ES256", "ec", k.ec, claimsAt(testIssuer)),
		mint(f, "EdDSA", "ed", k.ed, claimsAt(testIssuer)),
		mint(f, "HS256", "hs", k.hmac, claimsAt("hs")),
		noneToken(claimsAt(testIssuer)),
		"", ".", "..", "a.b.c", "eyJ9.eyJ9.", "eyJhbGciOiJIUzI1NiJ9..", "eyJhbGciOiJub25lIiwia2lkIjoicnNhIn0.e30.",
		// the strict classes of jose.go, validly signed
		jwsJSON(f, withRaw(defaultHeader, `"crit":["b64"],"b64":false`), claimsText()),
		jwsJSON(f, defaultHeader, claimsText("nbf", "1e19")),
		jwsJSON(f, defaultHeader, withRaw(claimsText(), `"sub":"admin"`)),
		jws(f, b64([]byte(defaultHeader))+"==", b64([]byte(claimsText()))),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		_, err := fx.v.Verify(context.Background(), tok)
		if err == nil {
			fresh := *fx.v
			fresh.cache = nil
			if _, _, err := fresh.verify(context.Background(), tok, fx.clock.Now()); err != nil {
				t.Fatalf("accepted %q that fails a fresh check: %v", tok, err)
			}
			return
		}
		checkRejection(t, tok, err)
	})
}

func checkRejection(t *testing.T, tok string, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) || Reason(err) == "" {
		t.Fatalf("rejection of %q is not a CredentialError: %v", tok, err)
	}
	if len(tok) >= 8 && strings.Contains(err.Error(), tok) {
		t.Fatalf("error %q repeats the token", err)
	}
}

// TestFuzzSeedsAcceptOnlyValid pins the seeds' expected outcomes, so the
// fuzz targets' corpus is known to contain both accepted and rejected
// inputs.
func TestFuzzSeedsAcceptOnlyValid(t *testing.T) {
	fx := newTicketFixture(t)
	if _, err := fx.v.Verify(context.Background(), fx.sign(t, "k1", validTicket())); err != nil {
		t.Fatal(err)
	}
	jf := newJWTFixture(t)
	if _, err := jf.v.Verify(context.Background(), noneToken(claimsAt(testIssuer))); !errors.Is(err, ErrUnsupportedAlg) {
		t.Fatal(err)
	}
}
