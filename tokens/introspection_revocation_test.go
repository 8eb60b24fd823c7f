package tokens

import (
	"context"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// TestIntrospectionRevocation: an introspected token is asked about like
// every other credential, cached answer or fresh: by its jti and sid, and
// by its subject's epoch against its iat. The authorization server knows
// nothing of these records, and a cached active answer would otherwise
// outlive them for cache_ttl.
func TestIntrospectionRevocation(t *testing.T) {
	rf := newRevFixture(t)
	a := newAuthServer(t)
	exp := t0.Add(time.Hour).Unix()
	old := t0.Add(-time.Hour).Unix()
	toks := map[string]map[string]any{
		"tok-by-jti-0000001": {"sub": "alice", "jti": "ia-1", "iat": old, "exp": exp},
		"tok-by-sid-0000001": {"sub": "erin", "sid": "s-e", "iat": old, "exp": exp},
		"tok-bob-old-000001": {"sub": "bob", "iat": old, "exp": exp},
		"tok-bob-new-000001": {"sub": "bob", "iat": t0.Unix(), "exp": exp},
		"tok-carol-no-iat01": {"sub": "carol", "exp": exp},
		"tok-dave-keep-0001": {"sub": "dave", "jti": "ia-2", "iat": old, "exp": exp},
		"tok-bad-jti-000001": {"sub": "frank", "jti": 7, "exp": exp},
	}
	for tok, claims := range toks {
		a.addToken(tok, claims)
	}
	a.set(func(a *authServer) { a.secrets["gw"] = "s3cret" })
	v, err := NewIntrospectionVerifier(IntrospectionConfig{Endpoint: a.endpoint(), ClientID: "gw",
		ClientSecretFile: writeFile(t, "secret", []byte("s3cret\n"))},
		IntrospectionOptions{Options: rf.opts(), HTTPClient: a.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for tok := range toks {
		_, err := v.Verify(ctx, tok)
		if tok == "tok-bad-jti-000001" {
			mustUndecided(t, err) // a jti that is not a string: not RFC 7662
			continue
		}
		wantAccepted(t, tok+" before revocation (now cached)", err)
	}
	rf.revoke(t, revocation.Record{Kind: revocation.KindJTI, ID: "ia-1", At: exp})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSID, ID: "s-e", At: exp})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSubject, ID: "bob", At: t0.Add(-time.Minute).Unix()})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSubject, ID: "carol", At: t0.Add(-time.Minute).Unix()})
	for _, tok := range []string{"tok-by-jti-0000001", "tok-by-sid-0000001", "tok-bob-old-000001", "tok-carol-no-iat01"} {
		_, err := v.Verify(ctx, tok)
		wantRevoked(t, tok+" (cached)", err)
	}
	for _, tok := range []string{"tok-bob-new-000001", "tok-dave-keep-0001"} {
		_, err := v.Verify(ctx, tok)
		wantAccepted(t, tok, err)
	}
	// A fresh introspection (nothing cached) is checked too.
	fresh, _ := introspectionFixture(t, a, rf.clock.Now)
	fresh.revs = rf.list
	_, err = fresh.Verify(ctx, "tok-by-jti-0000001")
	wantRevoked(t, "jti, first sight", err)
	if got := a.hits.Load(); got != int64(len(toks))+1 {
		t.Errorf("endpoint called %d times, want %d (revoked answers still served from the cache)", got, len(toks)+1)
	}
}
