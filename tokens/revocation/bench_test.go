package revocation

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/internal/benchcpu"
)

// BenchmarkCheck is one Check from memory: a miss (the common case) over
// an empty list and over 100k records, and a hit.
func BenchmarkCheck(b *testing.B) {
	for _, tc := range []struct {
		name    string
		records int
		give    *Query
	}{
		{"records=0/result=accepted", 0, q("alice", "shop", t0.Unix(), "jti", "j-x", "sid", "s-x")},
		{"records=100k/result=accepted", 100000, q("alice", "shop", t0.Unix(), "jti", "j-x", "sid", "s-x")},
		{"records=100k/result=revoked", 100000, q("alice", "shop", t0.Unix(), "jti", "id-99", "sid", "s-x")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := benchList(tc.records)
			ctx := context.Background()
			benchcpu.Report(b)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Check(ctx, t0, tc.give); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchList(n int) *List {
	l := New(NewMemory(0), Options{Now: func() time.Time { return t0 }, MaxStaleness: time.Hour})
	for i := range n {
		l.Apply(Record{Kind: KindJTI, ID: fmt.Sprint("id-", i), At: t0.Add(time.Hour).Unix()})
	}
	l.markSynced(t0)
	return l
}

// BenchmarkCheckUnderFlood is Checks on every core while one goroutine
// applies records as fast as it can (flood=on; far above 10,000 a
// second), against the same without it (flood=off): what a flood costs a
// Check beyond the CPU the applying takes.
func BenchmarkCheckUnderFlood(b *testing.B) {
	for _, flood := range []bool{false, true} {
		b.Run(fmt.Sprintf("flood=%v", flood), func(b *testing.B) {
			l := benchList(100000)
			ctx := context.Background()
			stop := make(chan struct{})
			done := make(chan struct{})
			var applied atomic.Int64
			go func() {
				defer close(done)
				for i := 0; flood; i++ {
					select {
					case <-stop:
						return
					default:
					}
					l.Apply(Record{Kind: KindJTI, ID: fmt.Sprint("flood-", i), At: t0.Add(time.Hour).Unix()})
					applied.Add(1)
				}
			}()
			start := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				query := q("alice", "shop", t0.Unix(), "jti", "j-x", "sid", "s-x")
				for pb.Next() {
					if v, err := l.Check(ctx, t0, query); err != nil || v.Revoked {
						b.Error(v, err)
						return
					}
				}
			})
			b.StopTimer()
			close(stop)
			<-done
			b.ReportMetric(float64(applied.Load())/time.Since(start).Seconds(), "applied/s")
		})
	}
}
