package redis_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/tokens"
	"github.com/ext-authz/ext-authz/tokens/redis"
)

// BenchmarkSession verifies one session token against a real redis-server:
// cache=miss does one HGETALL per iteration, cache=hit none.
func BenchmarkSession(b *testing.B) {
	srv := redistest.Start(b)
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr}, ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })
	for _, cache := range []string{"miss", "hit"} {
		b.Run("mode=session/cache="+cache, func(b *testing.B) {
			cfg := tokens.SessionConfig{Timeout: time.Second}
			if cache == "miss" {
				cfg.CacheSize = -1
			}
			v, err := tokens.NewSessionVerifier(cfg, redis.NewStore(client), tokens.Options{})
			if err != nil {
				b.Fatal(err)
			}
			cfg.ApplyDefaults()
			ctx := context.Background()
			if err := client.HSet(ctx, cfg.SessionKey(token), "uid", "u-1", "app", "shop", "scope", "a b").Err(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				p, err := v.Verify(ctx, token)
				if err != nil || p.Subject != "u-1" {
					b.Fatal(p, err)
				}
			}
		})
	}
}
