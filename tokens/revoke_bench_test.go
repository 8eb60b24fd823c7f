package tokens

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/internal/benchcpu"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// benchList is a running List on the test clock holding n credential
// records and n/10 subject epochs (none of which the benchmarked
// credential matches), or nil for revocation=off.
func benchList(b *testing.B, mode string, clk *clock) *revocation.List {
	if mode == "off" {
		return nil
	}
	n := map[string]int{"on": 0, "on-100k": 100000}[mode]
	src := revocation.NewMemory(0)
	for i := range n {
		_ = src.Revoke(revocation.Record{Kind: revocation.Kind(i % 3), ID: fmt.Sprint("id-", i), At: t0.Add(time.Hour).Unix()})
		if i%10 == 0 {
			_ = src.Revoke(revocation.Record{Kind: revocation.KindSubject, ID: fmt.Sprint("user-", i), At: t0.Unix()})
		}
	}
	l := revocation.New(src, revocation.Options{Now: clk.Now, MaxStaleness: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for l.Ready() != nil || l.Len() < n+n/10 {
		time.Sleep(time.Millisecond)
	}
	return l
}

// BenchmarkRevocation is the cached Verify of each kind with revocation
// off, on with no records, and on with 110k records held (same run, so
// the ratio is the cost of the check).
func BenchmarkRevocation(b *testing.B) {
	k := getKeys(b)
	for _, mode := range []string{"off", "on", "on-100k"} {
		b.Run("verifier=jwt/cache=hit/revocation="+mode, func(b *testing.B) {
			clk := newClock()
			opts := Options{Now: clk.Now, Revocations: benchList(b, mode, clk)}
			v, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{{Issuer: testIssuer, Audiences: []string{"api"}, JWKSFile: writeFile(b, "jwks.json", jwksJSON(jwk("ec", k.ec)))}}}, JWTOptions{Options: opts})
			if err != nil {
				b.Fatal(err)
			}
			benchcpu.Report(b)
			benchVerify(b, v, mint(b, "ES256", "ec", k.ec, withClaims(claimsAt(testIssuer), "jti", "jti-bench", "sid", "sid-bench")))
		})
		b.Run("verifier=ticket/cache=hit/revocation="+mode, func(b *testing.B) {
			clk := newClock()
			opts := Options{Now: clk.Now, Revocations: benchList(b, mode, clk)}
			file := writeFile(b, "k1.key", []byte(base64.StdEncoding.EncodeToString(k.hmac)))
			v, err := NewTicketVerifier(TicketConfig{Keys: []TicketKeyConfig{{ID: "k1", File: file}}}, opts)
			if err != nil {
				b.Fatal(err)
			}
			s, err := NewTicketSigner("k1", TicketHS256, file)
			if err != nil {
				b.Fatal(err)
			}
			tok, err := s.Sign(validTicket())
			if err != nil {
				b.Fatal(err)
			}
			benchcpu.Report(b)
			benchVerify(b, v, tok)
		})
		b.Run("verifier=session/cache=hit/revocation="+mode, func(b *testing.B) {
			clk := newClock()
			opts := Options{Now: clk.Now, Revocations: benchList(b, mode, clk)}
			var cfg SessionConfig
			cfg.ApplyDefaults()
			cfg.CacheTTL = time.Hour
			store := &memStore{records: map[string]map[string]string{cfg.SessionKey(sessionToken): {"uid": "u-1", "iat": "1795000000", "sid": "s-1"}}}
			v, err := NewSessionVerifier(cfg, store, opts)
			if err != nil {
				b.Fatal(err)
			}
			benchcpu.Report(b)
			benchVerify(b, v, sessionToken)
		})
		b.Run("verifier=api-key/revocation="+mode, func(b *testing.B) {
			clk := newClock()
			opts := Options{Now: clk.Now, Revocations: benchList(b, mode, clk)}
			file := writeFile(b, "keys.yaml", []byte("keys:\n  - {subject: alice, sha256: "+HashAPIKey("bench-api-key-1")+"}\n"))
			v, err := NewAPIKeyVerifierWithOptions(APIKeyConfig{File: file}, opts)
			if err != nil {
				b.Fatal(err)
			}
			benchcpu.Report(b)
			benchVerify(b, v, "bench-api-key-1")
		})
	}
}

// BenchmarkRevocationParallel is the cached JWT Verify on every core with
// revocation off and on (110k records).
func BenchmarkRevocationParallel(b *testing.B) {
	k := getKeys(b)
	for _, mode := range []string{"off", "on-100k"} {
		b.Run("revocation="+mode, func(b *testing.B) {
			clk := newClock()
			v, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{{Issuer: testIssuer, Audiences: []string{"api"}, JWKSFile: writeFile(b, "jwks.json", jwksJSON(jwk("ec", k.ec)))}}},
				JWTOptions{Options: Options{Now: clk.Now, Revocations: benchList(b, mode, clk)}})
			if err != nil {
				b.Fatal(err)
			}
			tok := mint(b, "ES256", "ec", k.ec, withClaims(claimsAt(testIssuer), "jti", "jti-bench"))
			ctx := context.Background()
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			benchcpu.Report(b)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.Verify(ctx, tok); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
