package tokens

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ticketFixture is a verifier with keys k1, k2 (HS256, active), ed (EdDSA,
// active) and old (retired), plus signers for each.
type ticketFixture struct {
	v       *TicketVerifier
	clock   *clock
	reg     *prometheus.Registry
	signers map[string]*TicketSigner
}

func newTicketFixture(t testing.TB, mutate ...func(*TicketConfig)) *ticketFixture {
	t.Helper()
	k := getKeys(t)
	hs1 := writeFile(t, "k1.key", []byte(base64.StdEncoding.EncodeToString(k.hmac)+"\n"))
	hs2 := writeFile(t, "k2.key", []byte(base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("2", 40)))))
	old := writeFile(t, "old.key", []byte(base64.StdEncoding.EncodeToString([]byte(strings.Repeat("o", 32)))))
	der, err := x509.MarshalPKCS8PrivateKey(k.ed)
	if err != nil {
		t.Fatal(err)
	}
	edPriv := writeFile(t, "ed.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	pubDer, _ := x509.MarshalPKIXPublicKey(k.ed.Public())
	edPub := writeFile(t, "ed.pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDer}))

	cfg := TicketConfig{Keys: []TicketKeyConfig{
		{ID: "k1", File: hs1},
		{ID: "k2", Algorithm: "HS256", File: hs2},
		{ID: "ed", Algorithm: "EdDSA", File: edPub},
		{ID: "old", Retired: true},
	}}
	for _, m := range mutate {
		m(&cfg)
	}
	f := &ticketFixture{clock: newClock(), reg: prometheus.NewRegistry(), signers: map[string]*TicketSigner{}}
	f.v, err = NewTicketVerifier(cfg, Options{Now: f.clock.Now, Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	for kid, spec := range map[string][2]string{"k1": {"HS256", hs1}, "k2": {"HS256", hs2}, "ed": {"EdDSA", edPriv}, "old": {"HS256", old}} {
		s, err := NewTicketSigner(kid, spec[0], spec[1])
		if err != nil {
			t.Fatal(err)
		}
		f.signers[kid] = s
	}
	return f
}

func (f *ticketFixture) sign(t testing.TB, kid string, c TicketClaims) string {
	t.Helper()
	s, err := f.signers[kid].Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validTicket() TicketClaims {
	return TicketClaims{
		UserID: "u-42", AppID: "shop", IssuedAt: t0, Expiry: t0.Add(time.Hour),
		Scopes: []string{"orders:read", "cart"}, Extra: map[string]any{"sid": "s-1"},
	}
}

func TestTicketAccepts(t *testing.T) {
	f := newTicketFixture(t)
	for _, kid := range []string{"k1", "k2", "ed"} {
		t.Run(kid, func(t *testing.T) {
			got, err := f.v.Verify(context.Background(), f.sign(t, kid, validTicket()))
			if err != nil {
				t.Fatal(err)
			}
			if got.Subject != "u-42" || got.AppID != "shop" || got.Issuer != "udb" || got.Method != MethodUDBTicket ||
				!got.Expiry.Equal(t0.Add(time.Hour)) || strings.Join(got.Scopes, ",") != "orders:read,cart" || got.Claims["sid"] != "s-1" {
				t.Errorf("principal = %+v", got)
			}
		})
	}
}

// resign replaces the payload of a k1 ticket and signs it again with k1, to
// build tickets a signer would refuse to mint.
func resign(t *testing.T, f *ticketFixture, payload string) string {
	t.Helper()
	return resignRaw(f, base64.RawURLEncoding.EncodeToString([]byte(payload)))
}

// resignRaw signs an arbitrary payload segment with k1.
func resignRaw(f *ticketFixture, segment string) string {
	signed := TicketPrefix + ".k1." + segment
	h := hmac.New(sha256.New, f.signers["k1"].secret)
	h.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func TestTicketRejects(t *testing.T) {
	f := newTicketFixture(t)
	good := f.sign(t, "k1", validTicket())
	parts := strings.Split(good, ".")
	tamperedPayload := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"uid":"admin","iat":1,"exp":99999999999}`)) + "." + parts[3]
	sig, _ := base64.RawURLEncoding.DecodeString(parts[3])
	sig[0] ^= 1
	tamperedSig := strings.Join(parts[:3], ".") + "." + base64.RawURLEncoding.EncodeToString(sig)
	expired := validTicket()
	expired.IssuedAt, expired.Expiry = t0.Add(-2*time.Hour), t0.Add(-time.Minute)
	future := validTicket()
	future.IssuedAt, future.Expiry = t0.Add(10*time.Minute), t0.Add(time.Hour)
	notYet := validTicket()
	notYet.Extra = map[string]any{"nbf": t0.Add(5 * time.Minute).Unix()}
	edAsHS := strings.Replace(f.sign(t, "k1", validTicket()), ".k1.", ".ed.", 1)

	tests := []struct {
		name string
		give string
		want error
	}{
		{"missing", "", ErrMissing},
		{"too large", TicketPrefix + ".k1." + strings.Repeat("A", DefaultMaxTokenBytes) + ".AAAA", ErrTooLarge},
		{"wrong prefix", strings.Replace(good, TicketPrefix, "udbt2", 1), ErrMalformed},
		{"too few parts", parts[0] + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"too many parts", good + ".x", ErrMalformed},
		{"bad kid chars", TicketPrefix + ".k!." + parts[2] + "." + parts[3], ErrMalformed},
		{"signature not base64url", strings.Join(parts[:3], ".") + ".***", ErrNonCanonicalEncoding},
		{"padded signature", good + "=", ErrNonCanonicalEncoding},
		{"payload not base64url", resignRaw(f, "e30="), ErrNonCanonicalEncoding},
		{"payload not JSON", resign(t, f, "not json"), ErrMalformed},
		{"payload JSON array", resign(t, f, `[1,2]`), ErrMalformed},
		{"no uid", resign(t, f, `{"iat":1,"exp":99999999999}`), ErrMalformed},
		{"uid not string", resign(t, f, `{"uid":7,"iat":1,"exp":99999999999}`), ErrMalformed},
		{"no exp", resign(t, f, `{"uid":"u","iat":1}`), ErrMalformed},
		{"fractional exp", resign(t, f, `{"uid":"u","iat":1,"exp":99999999999.5}`), ErrBadNumericDate},
		{"scope not string", resign(t, f, `{"uid":"u","iat":1,"exp":99999999999,"scope":["a"]}`), ErrMalformed},
		{"tampered payload", tamperedPayload, ErrBadSignature},
		{"tampered signature", tamperedSig, ErrBadSignature},
		{"truncated signature", strings.Join(parts[:3], ".") + "." + base64.RawURLEncoding.EncodeToString(sig[:len(sig)-3]), ErrBadSignature},
		{"unknown key id", f.sign(t, "k1", validTicket())[:len(TicketPrefix)+1] + "nope" + good[len(TicketPrefix)+3:], ErrUnknownKey},
		{"retired key", f.sign(t, "old", validTicket()), ErrRetiredKey},
		{"HMAC ticket under an EdDSA key id", edAsHS, ErrBadSignature},
		{"expired", f.sign(t, "k1", expired), ErrExpired},
		{"issued in future", f.sign(t, "k1", future), ErrIssuedInFuture},
		{"not yet valid", f.sign(t, "k1", notYet), ErrNotYetValid},
		{"a JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.Verify(context.Background(), tt.give)
			if !errors.Is(err, tt.want) || Reason(err) != Reason(tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTicketLeewayAndKeyRotation(t *testing.T) {
	f := newTicketFixture(t)
	c := validTicket()
	c.Expiry = t0.Add(-10 * time.Second) // within the 30s default leeway
	c.IssuedAt = t0.Add(-time.Hour)
	if _, err := f.v.Verify(context.Background(), f.sign(t, "k2", c)); err != nil {
		t.Fatalf("ticket within leeway: %v", err)
	}
	// Rotation: a verifier built with k2 retired rejects k2 and still
	// accepts k1.
	g := newTicketFixture(t, func(c *TicketConfig) { c.Keys[1].Retired = true })
	if _, err := g.v.Verify(context.Background(), g.sign(t, "k2", validTicket())); !errors.Is(err, ErrRetiredKey) {
		t.Fatalf("retired k2: %v", err)
	}
	if _, err := g.v.Verify(context.Background(), g.sign(t, "k1", validTicket())); err != nil {
		t.Fatalf("active k1: %v", err)
	}
}

func TestTicketCache(t *testing.T) {
	f := newTicketFixture(t)
	c := validTicket()
	c.Expiry = t0.Add(2 * time.Minute)
	tok := f.sign(t, "k1", c)
	for range 3 {
		if _, err := f.v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	hits := counterValue(f.reg, "ext_authz_token_cache_requests_total", "udb-ticket", "hit")
	if hits != 2 {
		t.Errorf("cache hits = %v, want 2", hits)
	}
	// The entry does not outlive the ticket: past exp+leeway it is
	// verified again and rejected.
	f.clock.Advance(2*time.Minute + 31*time.Second)
	if _, err := f.v.Verify(context.Background(), tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestTicketConfigErrors(t *testing.T) {
	keyFile := writeFile(t, "short.key", []byte(base64.StdEncoding.EncodeToString([]byte("short"))))
	tests := []struct {
		name string
		give TicketConfig
		want []string
	}{
		{"no keys", TicketConfig{}, []string{"keys: at least one key is required"}},
		{"bad id and alg", TicketConfig{Keys: []TicketKeyConfig{{ID: "a b", Algorithm: "RS256", File: "x"}}},
			[]string{"keys[0].id: must be", `keys[0].algorithm: must be HS256 or EdDSA, not "RS256"`}},
		{"duplicate and no file", TicketConfig{Keys: []TicketKeyConfig{{ID: "a", File: "x"}, {ID: "a"}}},
			[]string{`keys[1].id: duplicate key id "a"`, "keys[1].file: required for an active key"}},
		{"all retired", TicketConfig{Keys: []TicketKeyConfig{{ID: "a", Retired: true}}}, []string{"keys: every key is retired"}},
		{"negative", TicketConfig{Keys: []TicketKeyConfig{{ID: "a", File: "x"}}, Leeway: -1, MaxTokenBytes: -1},
			[]string{"leeway: must not be negative", "max_token_bytes: must not be negative"}},
		{"missing file", TicketConfig{Keys: []TicketKeyConfig{{ID: "a", File: "/nonexistent/k"}}}, []string{"keys[0].file: open /nonexistent/k"}},
		{"short key", TicketConfig{Keys: []TicketKeyConfig{{ID: "a", File: keyFile}}}, []string{"keys[0].file: ", "HS256 key has 5 bytes, need at least 32"}},
		{"ed25519 not PEM", TicketConfig{Keys: []TicketKeyConfig{{ID: "a", Algorithm: "EdDSA", File: keyFile}}}, []string{"keys[0].file: ", "no PEM block found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTicketVerifier(tt.give, Options{})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestTicketSignerRefusesBadInput(t *testing.T) {
	f := newTicketFixture(t)
	for _, c := range []TicketClaims{{AppID: "x", IssuedAt: t0, Expiry: t0.Add(time.Hour)}, {UserID: "u", IssuedAt: t0, Expiry: t0}} {
		if _, err := f.signers["k1"].Sign(c); err == nil {
			t.Errorf("Sign(%+v) = nil error", c)
		}
	}
	pubDer, _ := x509.MarshalPKIXPublicKey(getKeys(t).ed.Public())
	pub := writeFile(t, "pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDer}))
	if _, err := NewTicketSigner("ed", TicketEdDSA, pub); err == nil {
		t.Error("EdDSA signer from a public key: no error")
	}
}

// TestREADMETicketVector checks the test vector published in docs/tokens.md, so
// other teams' implementations can rely on it.
func TestREADMETicketVector(t *testing.T) {
	key := writeFile(t, "k1.key", []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"))
	v, err := NewTicketVerifier(TicketConfig{Keys: []TicketKeyConfig{{ID: "k1", File: key}}},
		Options{Now: func() time.Time { return time.Unix(1795000100, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	const vector = "udbt1.k1.eyJ1aWQiOiJ1LTQyIiwiYXBwIjoic2hvcCIsImlhdCI6MTc5NTAwMDAwMCwiZXhwIjoxNzk1MDAzNjAwLCJzY29wZSI6Im9yZGVyczpyZWFkIn0.DSHZ2rjztOxBH4rrXQfgAqNmP1QufCPwdW0_5LwgcU8"
	p, err := v.Verify(context.Background(), vector)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "u-42" || p.AppID != "shop" || p.Expiry.Unix() != 1795003600 || len(p.Scopes) != 1 || p.Scopes[0] != "orders:read" {
		t.Fatalf("principal = %+v", p)
	}
	readme, err := os.ReadFile("../docs/tokens.md")
	if err != nil || !strings.Contains(string(readme), vector) {
		t.Fatalf("docs/tokens.md does not carry the vector: %v", err)
	}
}
