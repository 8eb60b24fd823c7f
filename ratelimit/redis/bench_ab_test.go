package redis_test

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/benchcpu"
	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
)

// BenchmarkStoreCPU is the jwt-redis load test's store traffic: checks of
// two fixed-window descriptors from 64 goroutines (the load driver's
// callers), 1,000 users. It reports the CPU this process (cpu-ns/op) and
// redis-server (redis-cpu-ns/op) spent per check, and the checks per
// round trip, for the batcher's worker counts. This file uses only the
// Store API of main before issue 20's store work, so the same file runs
// against the old code for an A/B in one run.
func BenchmarkStoreCPU(b *testing.B) {
	srv := redistest.Start(b)
	// The load test's rules: two descriptors, limits never reached.
	src, err := os.ReadFile("../../loadtest/config/ratelimit/loadtest.yaml")
	if err != nil {
		b.Fatal(err)
	}
	rules, err := envoyconfig.Parse([]envoyconfig.File{{Name: "loadtest.yaml", Content: src}})
	if err != nil {
		b.Fatal(err)
	}
	for _, workers := range []int{1, 2, 4} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, MaxRetries: -1, ContextTimeoutEnabled: true})
			b.Cleanup(func() { _ = c.Close() })
			rt := &roundTrips{}
			c.AddHook(rt)
			s := running(b, c, rlredis.Options{Workers: workers})
			l := ratelimit.New(s, rules, ratelimit.Options{Timeout: 5 * time.Second, LocalCacheSize: -1})
			// Warm: the script is loaded and the connections are open.
			if _, err := l.Check(context.Background(), storeCPUReq(0)); err != nil {
				b.Fatal(err)
			}
			rt.n.Store(0)
			benchcpu.Report(b)
			redisStart := redisCPU(b, srv)
			b.Cleanup(func() {
				if b.N > 0 {
					b.ReportMetric((redisCPU(b, srv)-redisStart)*1e9/float64(b.N), "redis-cpu-ns/op")
					b.ReportMetric(float64(b.N)/float64(max(1, rt.n.Load())), "checks/roundtrip")
				}
			})
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32) // 64 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := l.Check(context.Background(), storeCPUReq(int(n.Add(1)%1000)))
					if err != nil || res.Code != ratelimit.OK || res.Statuses[1].Limit == nil {
						b.Errorf("%+v %v", res, err)
						return
					}
				}
			})
		})
	}
}

func storeCPUReq(u int) ratelimit.Request {
	return ratelimit.Request{Domain: "loadtest", Descriptors: []ratelimit.Descriptor{
		{Entries: []ratelimit.Entry{{Key: "generic_key", Value: "limited"}, {Key: "user", Value: "user-" + strconv.Itoa(u)}}, Hits: 1},
		{Entries: []ratelimit.Entry{{Key: "generic_key", Value: "limited-global"}}, Hits: 1},
	}}
}
