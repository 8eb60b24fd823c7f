package rls_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	pb_struct "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/ratelimit/ratelimittest"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

// naiveStore is the baseline: one Redis round trip per descriptor (INCRBY
// and EXPIRE pipelined, as envoyproxy/ratelimit sends them per key), no
// batching across calls.
type naiveStore struct{ c goredis.UniversalClient }

func (s naiveStore) Increment(ctx context.Context, ops []ratelimit.Op) error {
	for i := range ops {
		var incr *goredis.IntCmd
		if _, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			incr = p.IncrBy(ctx, ops[i].Key, int64(ops[i].Hits))
			p.Expire(ctx, ops[i].Key, ops[i].TTL)
			return nil
		}); err != nil {
			return err
		}
		ops[i].Count = uint64(incr.Val())
	}
	return nil
}

// BenchmarkShouldRateLimit measures ShouldRateLimit over a real gRPC socket
// with two descriptors per call, from 16 concurrent callers, against the
// naive Redis baseline in the same run.
func BenchmarkShouldRateLimit(b *testing.B) {
	srv := redistest.Start(b)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	b.Cleanup(func() { _ = c.Close() })
	batched := rlredis.New(c, rlredis.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = batched.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })

	for _, bc := range []struct {
		name  string
		store ratelimit.Store
	}{
		{"store=redis/naive-per-descriptor", naiveStore{c}},
		{"store=redis/batched", batched},
		{"store=redis/pipeline-per-call", rlredis.New(c, rlredis.Options{NoBatching: true})},
		{"store=memory", memory.New(memory.Options{})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := ratelimit.New(bc.store, ratelimittest.Rules(b), ratelimit.Options{Timeout: time.Second, LocalCacheSize: -1})
			client := serve(b, rls.New(l, rls.Options{}))
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(p *testing.PB) {
				for p.Next() {
					u := "u" + strconv.FormatInt(n.Add(1)%100000, 10)
					resp, err := client.ShouldRateLimit(context.Background(), &pb.RateLimitRequest{Domain: "contract", Descriptors: []*pb_struct.RateLimitDescriptor{
						{Entries: []*pb_struct.RateLimitDescriptor_Entry{{Key: "user", Value: u}}},
						{Entries: []*pb_struct.RateLimitDescriptor_Entry{{Key: "tenant", Value: "trial-" + u}}},
					}})
					if err != nil || len(resp.GetStatuses()) != 2 || resp.GetStatuses()[0].GetCurrentLimit() == nil {
						b.Errorf("%v %v", resp, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}
