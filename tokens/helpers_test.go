package tokens

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ext-authz/ext-authz/internal/logcapture"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testKeys are generated once per test binary: RSA generation is slow.
type testKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	ec        *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
	hmac      []byte
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func getKeys(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keys.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keys.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		_, keys.ed, _ = ed25519.GenerateKey(rand.Reader)
		keys.hmac = bytes.Repeat([]byte("k"), 32)
	})
	return &keys
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk renders the public half of key as a JWK map.
func jwk(kid string, key any) map[string]any {
	m := map[string]any{"kid": kid, "use": "sig"}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		pub, _ := k.PublicKey.Bytes() // 0x04 || X || Y
		size := (len(pub) - 1) / 2
		m["kty"], m["crv"], m["x"], m["y"] = "EC", "P-256", b64(pub[1:1+size]), b64(pub[1+size:])
	case ed25519.PrivateKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(k.Public().(ed25519.PublicKey))
	case []byte:
		m["kty"], m["k"] = "oct", b64(k)
	}
	return m
}

func jwksJSON(ks ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"keys": ks})
	if err != nil {
		panic(err)
	}
	return b
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mint signs claims with alg and key, setting kid when non-empty.
func mint(t testing.TB, alg, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(alg), claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claimsAt are valid claims for issuer iss at t0.
func claimsAt(iss string) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": iss, "sub": "user-1", "aud": "api",
		"iat": t0.Unix(), "nbf": t0.Unix(), "exp": t0.Add(time.Hour).Unix(),
		"scope": "read write", "azp": "app-1", "tenant": "t1",
	}
}

// logBuffer is a logger that records everything at debug level.
func logBuffer() (*slog.Logger, *logcapture.Buffer) {
	var b logcapture.Buffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}
