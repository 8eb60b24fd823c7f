package tokens

import (
	"context"
	"testing"
)

// The benchmarks verify one valid credential per iteration and fail if it is
// rejected. cache=miss uses a verifier without a cache, so every iteration
// does the full check; cache=hit is the steady state for a repeated token.
// Session benchmarks against a real redis-server are in tokens/redis.

func BenchmarkJWT(b *testing.B) {
	k := getKeys(b)
	cases := []struct {
		alg, kid, iss string
		key           any
	}{
		{"RS256", "rsa", testIssuer, k.rsa},
		{"ES256", "ec", testIssuer, k.ec},
		{"EdDSA", "ed", testIssuer, k.ed},
		{"HS256", "hs", "hs", k.hmac},
	}
	for _, c := range cases {
		for _, cache := range []string{"miss", "hit"} {
			b.Run("alg="+c.alg+"/cache="+cache, func(b *testing.B) {
				f := newJWTFixture(b, func(cfg *JWTConfig) {
					if cache == "miss" {
						cfg.Cache.Size = -1
					}
				})
				claims := claimsAt(c.iss)
				if c.iss == "hs" {
					delete(claims, "aud")
				}
				tok := mint(b, c.alg, c.kid, c.key, claims)
				benchVerify(b, f.v, tok)
			})
		}
	}
}

func BenchmarkTicket(b *testing.B) {
	for _, kid := range []string{"k1", "ed"} {
		alg := map[string]string{"k1": "HS256", "ed": "EdDSA"}[kid]
		for _, cache := range []string{"miss", "hit"} {
			b.Run("mode=ticket/alg="+alg+"/cache="+cache, func(b *testing.B) {
				f := newTicketFixture(b, func(cfg *TicketConfig) {
					if cache == "miss" {
						cfg.Cache.Size = -1
					}
				})
				benchVerify(b, f.v, f.sign(b, kid, validTicket()))
			})
		}
	}
}

type verifier interface {
	Verify(ctx context.Context, credential string) (Principal, error)
}

func benchVerify(b *testing.B, v verifier, tok string) {
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := v.Verify(ctx, tok)
		if err != nil || p.Subject == "" {
			b.Fatal(p, err)
		}
	}
}

// BenchmarkCacheParallel measures the cached path under contention.
func BenchmarkCacheParallel(b *testing.B) {
	f := newJWTFixture(b)
	tok := mint(b, "RS256", "rsa", f.keys.rsa, claimsAt(testIssuer))
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.v.Verify(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkStrictJOSE puts the cost of the strict checks of jose.go
// (op=checks: checkJWS alone, or the ticket payload checks) next to a whole
// Verify of the same token without a cache (op=verify/cache=miss, which
// includes the checks) and with one (op=verify/cache=hit, which skips them:
// a cached token passed them when it was first verified).
func BenchmarkStrictJOSE(b *testing.B) {
	k := getKeys(b)
	for _, c := range []struct {
		alg, kid, iss string
		key           any
	}{
		{"RS256", "rsa", testIssuer, k.rsa},
		{"ES256", "ec", testIssuer, k.ec},
		{"HS256", "hs", "hs", k.hmac},
	} {
		claims := claimsAt(c.iss)
		if c.iss == "hs" {
			delete(claims, "aud")
		}
		tok := mint(b, c.alg, c.kid, c.key, claims)
		b.Run("alg="+c.alg+"/op=checks", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if t, err := checkJWS(tok); err != nil || !t.hasExp {
					b.Fatal(err)
				}
			}
		})
		for _, cache := range []string{"miss", "hit"} {
			b.Run("alg="+c.alg+"/op=verify/cache="+cache, func(b *testing.B) {
				f := newJWTFixture(b, func(cfg *JWTConfig) {
					if cache == "miss" {
						cfg.Cache.Size = -1
					}
				})
				benchVerify(b, f.v, tok)
			})
		}
	}
	f := newTicketFixture(b, func(cfg *TicketConfig) { cfg.Cache.Size = -1 })
	ticket := f.sign(b, "k1", validTicket())
	b.Run("mode=ticket/alg=HS256/op=checks", func(b *testing.B) {
		_, payload, _, _, err := splitTicket(ticket)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			raw, err := decodeSegment(payload)
			if err != nil {
				b.Fatal(err)
			}
			if t, err := checkClaims(raw, true); err != nil || !t.hasExp {
				b.Fatal(err)
			}
		}
	})
	b.Run("mode=ticket/alg=HS256/op=verify/cache=miss", func(b *testing.B) {
		benchVerify(b, f.v, ticket)
	})
}
