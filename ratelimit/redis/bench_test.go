package redis_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/benchcpu"
	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/ratelimit/ratelimittest"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
)

// naiveStore is the baseline: one round trip per descriptor (INCRBY and
// EXPIRE pipelined together, as envoyproxy/ratelimit sends them), no
// batching across checks.
type naiveStore struct{ c goredis.UniversalClient }

func (s naiveStore) Increment(ctx context.Context, ops []ratelimit.Op) error {
	for i := range ops {
		var incr *goredis.IntCmd
		_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			incr = p.IncrBy(ctx, ops[i].Key, int64(ops[i].Hits))
			p.Expire(ctx, ops[i].Key, ops[i].TTL)
			return nil
		})
		if err != nil {
			return err
		}
		ops[i].Count = uint64(incr.Val())
	}
	return nil
}

// roundTrips counts what the client sends to Redis: one per pipeline or
// single command.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (r *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error { r.n.Add(1); return next(ctx, cmd) }
}
func (r *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error { r.n.Add(1); return next(ctx, cmds) }
}

// benchLimiter checks two descriptors per call (per user, per route+user)
// from many goroutines; users rotate so most checks are under the limit
// and every one reaches the store.
func benchLimiter(b *testing.B, store ratelimit.Store, rt *roundTrips) {
	l := ratelimit.New(store, ratelimittest.Rules(b), ratelimit.Options{Timeout: time.Second, LocalCacheSize: -1})
	if rt != nil {
		rt.n.Store(0)
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 goroutines on 2 cores: concurrent checks, as a gateway sends them
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u := "u" + strconv.FormatInt(n.Add(1)%100000, 10)
			res, err := l.Check(context.Background(), ratelimit.Request{Domain: "contract", Descriptors: []ratelimit.Descriptor{
				{Entries: []ratelimit.Entry{{Key: "user", Value: u}}, Hits: 1},
				{Entries: []ratelimit.Entry{{Key: "tenant", Value: "trial-" + u}}, Hits: 1},
			}})
			if err != nil || len(res.Statuses) != 2 || res.Statuses[0].Limit == nil {
				b.Errorf("%+v %v", res, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
	if rt != nil && rt.n.Load() > 0 {
		b.ReportMetric(float64(b.N)/float64(rt.n.Load()), "checks/roundtrip")
	}
}

// BenchmarkLimiter compares stores under the same concurrent load, in one
// run: memory, Redis with batching, Redis with one pipeline per check, and
// the naive one-round-trip-per-descriptor baseline.
func BenchmarkLimiter(b *testing.B) {
	srv := redistest.Start(b)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	b.Cleanup(func() { _ = c.Close() })
	rt := &roundTrips{}
	c.AddHook(rt)
	b.Run("store=memory", func(b *testing.B) { benchLimiter(b, memory.New(memory.Options{}), nil) })
	b.Run("store=redis/batch=on", func(b *testing.B) { benchLimiter(b, running(b, c, rlredis.Options{}), rt) })
	b.Run("store=redis/batch=off", func(b *testing.B) { benchLimiter(b, rlredis.New(c, rlredis.Options{}), rt) })
	b.Run("store=redis/naive-per-descriptor", func(b *testing.B) { benchLimiter(b, naiveStore{c}, rt) })
}

// BenchmarkLocalCache: a client hammering one key that is over its limit
// costs no Redis round trip.
func BenchmarkLocalCache(b *testing.B) {
	srv := redistest.Start(b)
	c := client(b, srv.Addr)
	for _, size := range []int{-1, 0} {
		name := "local_cache=on"
		if size < 0 {
			name = "local_cache=off"
		}
		b.Run(name, func(b *testing.B) {
			l := ratelimit.New(running(b, c, rlredis.Options{}), ratelimittest.Rules(b), ratelimit.Options{Timeout: time.Second, LocalCacheSize: size})
			req := ratelimit.Request{Domain: "contract", Descriptors: []ratelimit.Descriptor{
				{Entries: []ratelimit.Entry{{Key: "user", Value: "attacker-" + name}}, Hits: 1},
			}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Check(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkWindows compares, in one run on one Redis, today's path (two
// descriptors, one fixed window each, from the rate-limit files) with two
// descriptors of two windows each (10/second and 10000/day, a plan's
// shape) under every algorithm: one decision script per descriptor, in
// the same single pipeline.
func BenchmarkWindows(b *testing.B) {
	srv := redistest.Start(b)
	c := client(b, srv.Addr)
	s := running(b, c, rlredis.Options{})
	perSecond := &ratelimit.Limit{Policy: "s", Requests: 1_000_000, Unit: ratelimit.Second}
	perDay := &ratelimit.Limit{Policy: "d", Requests: 1_000_000_000, Unit: ratelimit.Day}
	two := []*ratelimit.Limit{perSecond, perDay}
	for _, bc := range []struct {
		name   string
		alg    ratelimit.Algorithm
		limits []*ratelimit.Limit
	}{
		// Today's path: INCRBY per descriptor, the limiter compares.
		{"descriptors=2/windows=1/fixed_window", ratelimit.FixedWindow, nil},
		{"descriptors=2/windows=2/fixed_window", ratelimit.FixedWindow, two},
		{"descriptors=2/windows=2/sliding_window", ratelimit.SlidingWindow, two},
		{"descriptors=2/windows=2/gcra", ratelimit.GCRA, two},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// On a shared machine ns/op swings with other load; the CPU
			// the benchmark process and redis-server spent per check are
			// steadier and are what a capacity plan needs.
			benchcpu.Report(b)
			redisStart := redisCPU(b, srv)
			b.Cleanup(func() {
				if b.N > 0 {
					b.ReportMetric((redisCPU(b, srv)-redisStart)*1e9/float64(b.N), "redis-cpu-ns/op")
				}
			})
			l := ratelimit.New(s, nil, ratelimit.Options{Timeout: 5 * time.Second, LocalCacheSize: -1, Algorithm: bc.alg})
			var override *ratelimit.Limit // a limit that never denies, so every check does the same work
			if bc.limits == nil {
				override = perSecond
			}
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					u := "u" + strconv.FormatInt(n.Add(1)%100000, 10)
					res, err := l.Check(context.Background(), ratelimit.Request{Domain: "contract", Descriptors: []ratelimit.Descriptor{
						{Entries: []ratelimit.Entry{{Key: "user", Value: u}}, Hits: 1, Limits: bc.limits, Override: override},
						{Entries: []ratelimit.Entry{{Key: "tenant", Value: "trial-" + u}}, Hits: 1, Limits: bc.limits, Override: override},
					}})
					if err != nil || res.Code != ratelimit.OK || res.Statuses[1].Limit == nil {
						b.Errorf("%+v %v", res, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
		})
	}
}

// redisCPU is the CPU time (s) redis-server has used, from INFO cpu.
func redisCPU(b *testing.B, srv *redistest.Server) float64 {
	out, err := srv.Do("INFO", "cpu")
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu: %q", line)
			}
			total += f
		}
	}
	return total
}
