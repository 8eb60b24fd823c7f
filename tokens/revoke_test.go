package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// revFixture is a List over an in-memory store, running, on the test clock.
type revFixture struct {
	list  *revocation.List
	store *revocation.Memory
	clock *clock
}

func newRevFixture(t *testing.T) *revFixture {
	t.Helper()
	f := &revFixture{store: revocation.NewMemory(0), clock: newClock()}
	f.list = revocation.New(f.store, revocation.Options{Now: f.clock.Now, MaxStaleness: time.Minute, Block: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = f.list.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	f.waitLen(t, 0)
	return f
}

// revoke writes r and waits until the List holds it.
func (f *revFixture) revoke(t *testing.T, r revocation.Record) {
	t.Helper()
	n := f.list.Len()
	if err := f.store.Revoke(r); err != nil {
		t.Fatal(err)
	}
	f.waitLen(t, n+1)
}

func (f *revFixture) waitLen(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.list.Ready() != nil || f.list.Len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("revocation list: %d records, want %d (ready: %v)", f.list.Len(), n, f.list.Ready())
		}
		time.Sleep(time.Millisecond)
	}
}

func (f *revFixture) opts() Options { return Options{Now: f.clock.Now, Revocations: f.list} }

func wantRevoked(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrRevoked) || Reason(err) != "revoked" {
		t.Errorf("%s: err %v, want revoked", what, err)
	}
}

func wantAccepted(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: err %v, want accepted", what, err)
	}
}

// malleateES256 turns an ES256 JWT's signature (r, s) into (r, n-s): a
// different token, just as valid (ECDSA accepts both).
func malleateES256(t *testing.T, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("not an ES256 signature: %v", err)
	}
	n := getKeys(t).ec.Curve.Params().N
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(n, s)
	out := append([]byte(nil), sig[:32]...)
	out = append(out, s.FillBytes(make([]byte, 32))...)
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(out)
}

func TestJWTRevocation(t *testing.T) {
	rf := newRevFixture(t)
	fx := newJWTFixture(t)
	v, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{{Issuer: testIssuer, Audiences: []string{"api"}, JWKSFile: writeFile(t, "jwks.json", jwksJSON(jwk("ec", fx.keys.ec)))}}},
		JWTOptions{Options: rf.opts()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	exp := t0.Add(time.Hour).Unix()
	token := func(kv ...any) string {
		return mint(t, "ES256", "ec", fx.keys.ec, withClaims(claimsAt(testIssuer), kv...))
	}

	byJTI := token("jti", "j-1", "sub", "alice")
	malleated := malleateES256(t, byJTI)
	if malleated == byJTI {
		t.Fatal("malleation changed nothing")
	}
	bySID := token("jti", "j-2", "sid", "s-9", "sub", "bob")
	old := token("jti", "j-3", "sub", "carol", "iat", t0.Add(-time.Hour).Unix())
	fresh := token("jti", "j-4", "sub", "carol", "iat", t0.Unix())
	noIat := token("jti", "j-5", "sub", "carol", "iat", nil)
	otherApp := token("jti", "j-6", "sub", "dave", "azp", "blog", "iat", t0.Add(-time.Hour).Unix())
	sameApp := token("jti", "j-7", "sub", "dave", "azp", "shop", "iat", t0.Add(-time.Hour).Unix())
	all := []string{byJTI, malleated, bySID, old, fresh, noIat, otherApp, sameApp}
	for i, tok := range all { // accepted, and cached
		for range 2 {
			_, err := v.Verify(ctx, tok)
			wantAccepted(t, "before revocation #"+string(rune('0'+i)), err)
		}
	}
	rf.revoke(t, revocation.Record{Kind: revocation.KindJTI, ID: "j-1", At: exp})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSID, ID: "s-9", At: exp})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSubject, ID: "carol", At: t0.Add(-time.Minute).Unix()})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSubject, ID: "dave", App: "shop", At: t0.Unix()})

	tests := []struct {
		name    string
		give    string
		revoked bool
	}{
		{"by jti (cached)", byJTI, true},
		{"by jti, signature malleated (cached)", malleated, true},
		{"by sid", bySID, true},
		{"issued before the subject epoch", old, true},
		{"issued after the subject epoch", fresh, false},
		{"without iat, under a subject epoch", noIat, true},
		{"epoch of another app", otherApp, false},
		{"epoch of its app", sameApp, true},
	}
	for _, tt := range tests {
		_, err := v.Verify(ctx, tt.give)
		if tt.revoked {
			wantRevoked(t, tt.name, err)
		} else {
			wantAccepted(t, tt.name, err)
		}
	}
	// A malleated copy never seen before (not cached) is revoked too.
	v2, _ := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{{Issuer: testIssuer, Audiences: []string{"api"}, JWKSFile: writeFile(t, "jwks2.json", jwksJSON(jwk("ec", fx.keys.ec)))}}}, JWTOptions{Options: rf.opts()})
	_, err = v2.Verify(ctx, malleated)
	wantRevoked(t, "malleated, first sight", err)
}

func TestTicketRevocation(t *testing.T) {
	rf := newRevFixture(t)
	fx := newTicketFixture(t)
	cfg := TicketConfig{Keys: []TicketKeyConfig{{ID: "k1", File: writeFile(t, "k1.key", []byte(base64.StdEncoding.EncodeToString(getKeys(t).hmac)))}}}
	v, err := NewTicketVerifier(cfg, rf.opts())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sign := func(uid string, extra map[string]any, iat time.Time) string {
		c := validTicket()
		c.UserID, c.Extra, c.IssuedAt = uid, extra, iat
		return fx.sign(t, "k1", c)
	}
	withJTI := sign("u-1", map[string]any{"jti": "t-1"}, t0)
	noJTI := sign("u-2", nil, t0)
	old := sign("u-3", nil, t0.Add(-time.Hour))
	fresh := sign("u-3", nil, t0)
	bySID := sign("u-4", map[string]any{"sid": "s-4"}, t0)
	keep := sign("u-5", map[string]any{"jti": "t-5"}, t0)
	for _, tok := range []string{withJTI, noJTI, old, fresh, bySID, keep} {
		_, err := v.Verify(ctx, tok)
		wantAccepted(t, "before revocation", err)
	}
	payload := strings.Split(noJTI, ".")[2]
	exp := t0.Add(time.Hour).Unix()
	rf.revoke(t, revocation.Record{Kind: revocation.KindTicket, ID: "t-1", At: exp})
	rf.revoke(t, revocation.Record{Kind: revocation.KindTicket, ID: TicketID("", payload), At: exp})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSubject, ID: "u-3", At: t0.Add(-time.Minute).Unix()})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSID, ID: "s-4", At: exp})
	_, err = v.Verify(ctx, withJTI)
	wantRevoked(t, "ticket by jti", err)
	_, err = v.Verify(ctx, noJTI)
	wantRevoked(t, "ticket by payload digest", err)
	_, err = v.Verify(ctx, old)
	wantRevoked(t, "ticket before the epoch", err)
	_, err = v.Verify(ctx, fresh)
	wantAccepted(t, "ticket after the epoch", err)
	_, err = v.Verify(ctx, bySID)
	wantRevoked(t, "ticket by sid", err)
	_, err = v.Verify(ctx, keep)
	wantAccepted(t, "other ticket", err)
	if !strings.HasPrefix(TicketID("", payload), "sha256:") || TicketID("x", payload) != "x" {
		t.Errorf("TicketID: %q, %q", TicketID("", payload), TicketID("x", payload))
	}
}

func TestSessionRevocation(t *testing.T) {
	rf := newRevFixture(t)
	store := &memStore{records: map[string]map[string]string{}}
	var cfg SessionConfig
	cfg.ApplyDefaults()
	v, err := NewSessionVerifier(cfg, store, rf.opts())
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]map[string]string{
		"sess_revoked_by_digest_00": {"uid": "u-1", "iat": "1795000000"},
		"sess_subject_old_00000000": {"uid": "u-2", "iat": "1795000000"},
		"sess_subject_new_00000000": {"uid": "u-2", "iat": "1795000100"},
		"sess_subject_noiat_000000": {"uid": "u-2"},
		"sess_sid_0000000000000000": {"uid": "u-3", "sid": "s-3", "iat": "1795000000"},
		"sess_untouched_0000000000": {"uid": "u-4", "iat": "1795000000"},
	}
	for tok, rec := range tokens {
		store.records[cfg.SessionKey(tok)] = rec
	}
	ctx := context.Background()
	for tok := range tokens {
		_, err := v.Verify(ctx, tok)
		wantAccepted(t, tok, err)
	}
	calls := store.calls.Load()
	d := sha256.Sum256([]byte("sess_revoked_by_digest_00"))
	exp := t0.Add(time.Hour).Unix()
	rf.revoke(t, revocation.Record{Kind: revocation.KindSession, ID: string(d[:]), At: exp})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSubject, ID: "u-2", At: 1795000050})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSID, ID: "s-3", At: exp})
	want := map[string]bool{
		"sess_revoked_by_digest_00": true, "sess_subject_old_00000000": true, "sess_subject_new_00000000": false,
		"sess_subject_noiat_000000": true, "sess_sid_0000000000000000": true, "sess_untouched_0000000000": false,
	}
	for tok, revoked := range want {
		_, err := v.Verify(ctx, tok)
		if revoked {
			wantRevoked(t, tok, err)
		} else {
			wantAccepted(t, tok, err)
		}
	}
	if n := store.calls.Load(); n != calls {
		t.Errorf("revocation checks of cached sessions cost %d store calls, want 0", n-calls)
	}
}

func TestAPIKeyRevocation(t *testing.T) {
	rf := newRevFixture(t)
	file := writeFile(t, "keys.yaml", []byte("keys:\n  - {subject: alice, sha256: "+HashAPIKey("key-alice-1")+"}\n  - {subject: alice, sha256: "+HashAPIKey("key-alice-2")+"}\n"))
	v, err := NewAPIKeyVerifierWithOptions(APIKeyConfig{File: file}, rf.opts())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := sha256.Sum256([]byte("key-alice-1"))
	rf.revoke(t, revocation.Record{Kind: revocation.KindAPIKey, ID: string(d[:])})
	rf.revoke(t, revocation.Record{Kind: revocation.KindSubject, ID: "alice", At: t0.Unix()})
	_, err = v.Verify(ctx, "key-alice-1")
	wantRevoked(t, "revoked key", err)
	_, err = v.Verify(ctx, "key-alice-2")
	wantAccepted(t, "other key of the subject (epochs do not apply to API keys)", err)
}

// TestRevocationUndecided: a List that cannot vouch for its memory and
// cannot reach its store makes the verifier answer could-not-decide (503),
// never a rejection and never an acceptance.
func TestRevocationUndecided(t *testing.T) {
	store := revocation.NewMemory(0)
	store.Fail(errors.New("store down"))
	clk := newClock()
	list := revocation.New(store, revocation.Options{Now: clk.Now})
	file := writeFile(t, "keys.yaml", []byte("keys:\n  - {subject: alice, sha256: "+HashAPIKey("key-alice-1")+"}\n"))
	v, err := NewAPIKeyVerifierWithOptions(APIKeyConfig{File: file}, Options{Now: clk.Now, Revocations: list})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), "key-alice-1")
	if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "store down") {
		t.Errorf("err %v, want a could-not-decide error", err)
	}
	// The store answers again: a lookup decides without Run.
	store.Fail(nil)
	_, err = v.Verify(context.Background(), "key-alice-1")
	wantAccepted(t, "lookup after recovery", err)
}
