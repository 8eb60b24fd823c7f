package tokens

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

const testIssuer = "https://issuer.example"

// jwtFixture is a verifier for testIssuer with a local JWKS holding an RSA
// (kid rsa), an EC (kid ec) and an Ed25519 (kid ed) public key, and a second
// issuer "hs" with an HMAC key (kid hs) that allows HS256 only.
type jwtFixture struct {
	v     *JWTVerifier
	clock *clock
	reg   *prometheus.Registry
	keys  *testKeys
}

func newJWTFixture(t testing.TB, mutate ...func(*JWTConfig)) *jwtFixture {
	t.Helper()
	k := getKeys(t)
	file := writeFile(t, "jwks.json", jwksJSON(jwk("rsa", k.rsa), jwk("ec", k.ec), jwk("ed", k.ed)))
	hsFile := writeFile(t, "hs.json", jwksJSON(jwk("hs", k.hmac), jwk("rsa", k.rsa)))
	cfg := JWTConfig{Issuers: []IssuerConfig{
		{Issuer: testIssuer, Audiences: []string{"api", "other"}, JWKSFile: file},
		{Issuer: "hs", Algorithms: []string{"HS256"}, JWKSFile: hsFile},
	}}
	for _, m := range mutate {
		m(&cfg)
	}
	f := &jwtFixture{clock: newClock(), reg: prometheus.NewRegistry(), keys: k}
	var err error
	f.v, err = NewJWTVerifier(cfg, JWTOptions{Options: Options{Now: f.clock.Now, Registerer: f.reg}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestJWTAccepts(t *testing.T) {
	f := newJWTFixture(t)
	k := f.keys
	tests := []struct {
		name string
		give string
	}{
		{"RS256", mint(t, "RS256", "rsa", k.rsa, claimsAt(testIssuer))},
		{"PS256", mint(t, "PS256", "rsa", k.rsa, claimsAt(testIssuer))},
		{"ES256", mint(t, "ES256", "ec", k.ec, claimsAt(testIssuer))},
		{"EdDSA", mint(t, "EdDSA", "ed", k.ed, claimsAt(testIssuer))},
		{"HS256", mint(t, "HS256", "hs", k.hmac, withClaims(claimsAt("hs"), "aud", nil))},
		{"aud list", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "aud", []string{"x", "other"}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.v.Verify(context.Background(), tt.give)
			if err != nil {
				t.Fatal(err)
			}
			if got.Subject != "user-1" || got.Method != MethodJWT || got.AppID != "app-1" ||
				!slices.Equal(got.Scopes, []string{"read", "write"}) || got.Claims["tenant"] != "t1" ||
				!got.Expiry.Equal(t0.Add(time.Hour)) {
				t.Errorf("principal = %+v", got)
			}
			if _, ok := got.Claims["exp"]; ok {
				t.Error("exp left in Claims")
			}
		})
	}
}

func withClaims(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func TestJWTScopes(t *testing.T) {
	f := newJWTFixture(t)
	tests := []struct {
		name string
		give jwt.MapClaims
		want []string
	}{
		{"scope string", withClaims(claimsAt(testIssuer), "scope", "a b  c"), []string{"a", "b", "c"}},
		{"scp list", withClaims(claimsAt(testIssuer), "scope", nil, "scp", []string{"x", "y"}), []string{"x", "y"}},
		{"scp string", withClaims(claimsAt(testIssuer), "scope", nil, "scp", "x y"), []string{"x", "y"}},
		{"none", withClaims(claimsAt(testIssuer), "scope", nil), nil},
		// RFC 6749 3.3: only SP separates scopes. A granted scope holding
		// other whitespace is one scope, so it cannot meet a requirement
		// for "admin" (and authz refuses to forward it).
		{"no-break space does not separate", withClaims(claimsAt(testIssuer), "scope", "read\u00a0admin"), []string{"read\u00a0admin"}},
		{"tab does not separate", withClaims(claimsAt(testIssuer), "scope", "read\tadmin"), []string{"read\tadmin"}},
		{"line feed does not separate", withClaims(claimsAt(testIssuer), "scope", "read\nadmin"), []string{"read\nadmin"}},
		{"em space does not separate", withClaims(claimsAt(testIssuer), "scope", "read\u2003admin"), []string{"read\u2003admin"}},
		{"next line does not separate", withClaims(claimsAt(testIssuer), "scope", "read\u0085admin"), []string{"read\u0085admin"}},
		{"scp string, no-break space", withClaims(claimsAt(testIssuer), "scope", nil, "scp", "x\u00a0admin"), []string{"x\u00a0admin"}},
		{"leading and trailing spaces", withClaims(claimsAt(testIssuer), "scope", " a  b "), []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.v.Verify(context.Background(), mint(t, "ES256", "ec", f.keys.ec, tt.give))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Scopes, tt.want) {
				t.Errorf("scopes = %q, want %q", got.Scopes, tt.want)
			}
		})
	}
}

// noneToken builds an unsigned token by hand: the library refuses to.
func noneToken(c jwt.MapClaims) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, c)
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		panic(err)
	}
	return s
}

func rsaPublicPEM(t testing.TB, k *testKeys) []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestJWTRejects(t *testing.T) {
	f := newJWTFixture(t)
	k := f.keys
	good := mint(t, "RS256", "rsa", k.rsa, claimsAt(testIssuer))
	parts := strings.Split(good, ".")
	tamperedPayload := parts[0] + "." + b64([]byte(`{"iss":"`+testIssuer+`","sub":"admin","aud":"api","exp":9999999999}`)) + "." + parts[2]
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[10] ^= 0x80
	tamperedSig := parts[0] + "." + parts[1] + "." + b64(sig)
	pubPEM := rsaPublicPEM(t, k)

	tests := []struct {
		name string
		give string
		want error
	}{
		{"missing", "", ErrMissing},
		{"too large", good + strings.Repeat("A", DefaultMaxTokenBytes), ErrTooLarge},
		{"not a JWT", "hello", ErrMalformed},
		{"header not base64url", "e!!." + parts[1] + "." + parts[2], ErrNonCanonicalEncoding},
		{"payload not base64url", parts[0] + ".%%%." + parts[2], ErrNonCanonicalEncoding},
		{"malformed JSON header", b64([]byte("{not json")) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"malformed JSON payload", parts[0] + "." + b64([]byte("[1,")) + "." + parts[2], ErrMalformed},
		{"alg none", noneToken(claimsAt(testIssuer)), ErrUnsupportedAlg},
		{"alg none, kid of a real key", mintNoneWithKid(claimsAt(testIssuer)), ErrUnsupportedAlg},
		{"unknown alg", b64([]byte(`{"alg":"XX256","kid":"rsa"}`)) + "." + parts[1] + "." + parts[2], ErrUnsupportedAlg},
		{"RS256 re-signed with HS256 using the public key", mint(t, "HS256", "rsa", pubPEM, claimsAt(testIssuer)), ErrUnsupportedAlg},
		{"HS256 allowed, kid names an RSA key", mint(t, "HS256", "rsa", pubPEM, claimsAt("hs")), ErrUnsupportedAlg},
		{"ES256 signature under an RSA kid", mint(t, "ES256", "rsa", k.ec, claimsAt(testIssuer)), ErrUnsupportedAlg},
		{"tampered payload", tamperedPayload, ErrBadSignature},
		{"tampered signature", tamperedSig, ErrBadSignature},
		{"signed by another key", mint(t, "RS256", "rsa", k.rsa2, claimsAt(testIssuer)), ErrBadSignature},
		{"unknown kid", mint(t, "RS256", "nope", k.rsa, claimsAt(testIssuer)), ErrUnknownKey},
		{"no kid, several keys", mint(t, "RS256", "", k.rsa, claimsAt(testIssuer)), ErrUnknownKey},
		{"expired", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "exp", t0.Add(-time.Minute).Unix())), ErrExpired},
		{"no exp", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "exp", nil)), ErrMalformed},
		{"exp not a number", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "exp", "soon")), ErrBadNumericDate},
		{"not yet valid", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "nbf", t0.Add(time.Minute).Unix())), ErrNotYetValid},
		{"issued in future", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "iat", t0.Add(time.Minute).Unix())), ErrIssuedInFuture},
		{"wrong issuer", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "iss", "https://evil.example")), ErrWrongIssuer},
		{"no issuer", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "iss", nil)), ErrWrongIssuer},
		{"wrong audience", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "aud", "billing")), ErrWrongAudience},
		{"no audience", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "aud", nil)), ErrWrongAudience},
		{"no subject", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "sub", nil)), ErrMalformed},
		{"scp of numbers", mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "scope", nil, "scp", []int{1})), ErrMalformed},
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

func mintNoneWithKid(c jwt.MapClaims) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, c)
	tok.Header["kid"] = "rsa"
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		panic(err)
	}
	return s
}

func TestJWTLeeway(t *testing.T) {
	f := newJWTFixture(t, func(c *JWTConfig) { c.Issuers[0].Leeway = time.Minute })
	tok := mint(t, "RS256", "rsa", f.keys.rsa, withClaims(claimsAt(testIssuer),
		"exp", t0.Add(-50*time.Second).Unix(), "nbf", t0.Add(50*time.Second).Unix(), "iat", t0.Add(50*time.Second).Unix()))
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	f.clock.Advance(11 * time.Second)
	f.v.cache = newVerifiedCache(0) // forget the cached result to check exp itself
	if _, err := f.v.Verify(context.Background(), tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("past leeway: %v", err)
	}
}

func TestJWTCache(t *testing.T) {
	f := newJWTFixture(t)
	tok := mint(t, "RS256", "rsa", f.keys.rsa, withClaims(claimsAt(testIssuer), "exp", t0.Add(time.Minute).Unix()))
	for range 3 {
		if _, err := f.v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := counterValue(f.reg, "ext_authz_token_cache_requests_total", "jwt", "hit"); got != 2 {
		t.Errorf("cache hits = %v, want 2", got)
	}
	// A different token for the same subject is not served from the cache.
	other := mint(t, "RS256", "rsa", f.keys.rsa2, withClaims(claimsAt(testIssuer), "exp", t0.Add(time.Minute).Unix()))
	if _, err := f.v.Verify(context.Background(), other); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("same subject, bad signature: %v", err)
	}
	// The entry lives no longer than exp: the cached token is rechecked
	// once exp has passed (here rejected, past exp + leeway).
	f.clock.Advance(time.Minute + 31*time.Second)
	if _, err := f.v.Verify(context.Background(), tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("after exp: %v", err)
	}
}

func TestJWTCacheIsPerVerifier(t *testing.T) {
	// Two verifiers (two issuer configurations) never share entries: a
	// token accepted by one is still checked by the other.
	a := newJWTFixture(t)
	b := newJWTFixture(t, func(c *JWTConfig) { c.Issuers[0].Audiences = []string{"elsewhere"} })
	tok := mint(t, "RS256", "rsa", a.keys.rsa, claimsAt(testIssuer))
	if _, err := a.v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, err := b.v.Verify(context.Background(), tok); !errors.Is(err, ErrWrongAudience) {
		t.Fatalf("second verifier: %v", err)
	}
}

func TestJWTConfigErrors(t *testing.T) {
	garbage := writeFile(t, "garbage.json", []byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	tests := []struct {
		name string
		give JWTConfig
		want []string
	}{
		{"no issuers", JWTConfig{}, []string{"issuers: at least one issuer is required"}},
		{"no key source", JWTConfig{Issuers: []IssuerConfig{{Issuer: "a"}}}, []string{"issuers[0]: set a key source: jwks_file, jwks_url or discovery"}},
		{"none and unknown", JWTConfig{Issuers: []IssuerConfig{{Issuer: "a", JWKSFile: "x", Algorithms: []string{"RS256", "none", "HS1"}}}},
			[]string{`issuers[0].algorithms[1]: "none" is never allowed`, `issuers[0].algorithms[2]: unknown algorithm "HS1"`}},
		{"duplicate, bad url", JWTConfig{Issuers: []IssuerConfig{{Issuer: "a", JWKSFile: "x"}, {Issuer: "a", JWKSURL: "ftp://x/jwks"}}},
			[]string{`issuers[1].issuer: duplicate issuer "a"`, "issuers[1].jwks_url: must be an http or https URL"}},
		{"missing issuer, negative", JWTConfig{Issuers: []IssuerConfig{{JWKSFile: "x", Leeway: -1, FetchTimeout: -1}}},
			[]string{"issuers[0].issuer: required", "issuers[0].leeway: must not be negative", "issuers[0].fetch_timeout: must not be negative"}},
		{"unreadable file", JWTConfig{Issuers: []IssuerConfig{{Issuer: "a", JWKSFile: "/nonexistent/jwks.json"}}}, []string{"issuers[0].jwks_file: open /nonexistent/jwks.json"}},
		{"no usable key", JWTConfig{Issuers: []IssuerConfig{{Issuer: "a", JWKSFile: garbage}}}, []string{"issuers[0].jwks_file: ", "no usable signature key (1 skipped)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewJWTVerifier(tt.give, JWTOptions{})
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

// splitScopes serves JWT scope/scp strings, UDB session and ticket scopes:
// only SP (0x20) separates (RFC 6749 3.3).
func TestSplitScopes(t *testing.T) {
	tests := []struct {
		give string
		want []string
	}{
		{"", nil},
		{"   ", nil},
		{"a", []string{"a"}},
		{"a b", []string{"a", "b"}},
		{" a  b ", []string{"a", "b"}},
		{"a\tb", []string{"a\tb"}},
		{"a\r\nb", []string{"a\r\nb"}},
		{"a\u00a0b", []string{"a\u00a0b"}},
		{"a\u2028b c", []string{"a\u2028b", "c"}},
		{"a\u3000b", []string{"a\u3000b"}},
	}
	for _, tt := range tests {
		if got := splitScopes(tt.give); !slices.Equal(got, tt.want) {
			t.Errorf("splitScopes(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
