package redis_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/ratelimit"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
)

// oracleScript is the counter script of main before issue 20's store work
// (6f3a2f8, ratelimit/redis/redis.go), copied verbatim: the oracle the
// differential tests run one op at a time, in order.
const oracleScript = `
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
`

// TestOracleIsTheOldScript: the copy above is the per-counter script the
// store still sends on Cluster.
func TestOracleIsTheOldScript(t *testing.T) {
	if rlredis.ScriptSources[0] != oracleScript {
		t.Fatal("the per-counter script changed: the differential tests' oracle must be the old one")
	}
}

// diffKeys are the counters the random sequences touch: few, so that
// calls and batches share them.
const diffKeys = 10

// diffOp is one random op: a counter, or now and then a fixed-window
// decision on two windows (mixed into the same pipeline).
func diffOp(rng *rand.Rand, prefix string) ratelimit.Op {
	hits := []uint64{0, 1, 1, 1, 2, 5, ratelimit.MaxHits}[rng.IntN(7)]
	if rng.IntN(8) == 0 {
		k := strconv.Itoa(rng.IntN(3))
		return ratelimit.Op{Hits: hits, Algorithm: ratelimit.FixedWindow, Windows: []ratelimit.Window{
			{Key: prefix + "{d" + k + "}w1", Limit: uint64(rng.IntN(20)), Period: time.Minute},
			{Key: prefix + "{d" + k + "}w2", Limit: uint64(rng.IntN(40)), Period: time.Hour, Shadow: rng.IntN(2) == 0},
		}}
	}
	ttl := []time.Duration{10 * time.Second, time.Minute, time.Hour, 24 * time.Hour, 1500 * time.Millisecond * 10}[rng.IntN(5)]
	return ratelimit.Op{Key: prefix + "k" + strconv.Itoa(rng.IntN(diffKeys)), Hits: hits, TTL: ttl}
}

// cloneOps copies ops with prefix replaced by another.
func cloneOps(ops []ratelimit.Op, from, to string) []ratelimit.Op {
	out := make([]ratelimit.Op, len(ops))
	for i, op := range ops {
		out[i] = op
		if op.Key != "" {
			out[i].Key = to + op.Key[len(from):]
		}
		out[i].Windows = nil
		for _, w := range op.Windows {
			w.Key = to + w.Key[len(from):]
			out[i].Windows = append(out[i].Windows, w)
		}
	}
	return out
}

// oracleCall runs one call the old way: each counter by the old script,
// one at a time; a decision op through the store alone (its script did
// not change). The call fails when any op does.
func oracleCall(ctx context.Context, c goredis.UniversalClient, alone ratelimit.Store, ops []ratelimit.Op) error {
	var first error
	for i := range ops {
		op := &ops[i]
		if len(op.Windows) > 0 {
			if err := alone.Increment(ctx, ops[i:i+1]); err != nil && first == nil {
				first = err
			}
			continue
		}
		n, err := c.Eval(ctx, oracleScript, []string{op.Key}, op.Hits, max(1, op.TTL.Milliseconds())).Int64()
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		op.Count = uint64(n)
	}
	return first
}

// plant sets up a counter the way another writer might have left it, on
// both sides.
func plant(t *testing.T, ctx context.Context, c goredis.UniversalClient, rng *rand.Rand, prefixes ...string) {
	plantKind(t, ctx, c, rng, diffKeys, 5, prefixes...)
}

// plantKind is plant over the first keys counters and the first kinds
// kinds; kinds 5 to 7 are counters near the edges of what an increment
// can reach exactly: int64's maximum (INCRBY overflows) and ±2^53 (where
// a Lua number stops holding every integer).
func plantKind(t *testing.T, ctx context.Context, c goredis.UniversalClient, rng *rand.Rand, keys, kinds int, prefixes ...string) {
	k := "k" + strconv.Itoa(rng.IntN(keys))
	kind, v := rng.IntN(kinds), rng.IntN(50)
	var edge int64
	switch kind {
	case 5:
		edge = math.MaxInt64 - rng.Int64N(3*ratelimit.MaxHits)
	case 6:
		edge = 1<<53 - rng.Int64N(12)
	case 7:
		edge = -1<<53 - 6 + rng.Int64N(12)
	}
	for _, p := range prefixes {
		var err error
		switch kind {
		case 0: // a count without an expiry
			err = c.Set(ctx, p+k, v, 0).Err()
		case 1: // not an integer
			err = c.Set(ctx, p+k, "abc", 0).Err()
		case 2: // another type
			err = c.Del(ctx, p+k).Err()
			if err == nil {
				err = c.HSet(ctx, p+k, "f", "v").Err()
			}
		case 3: // gone
			err = c.Del(ctx, p+k).Err()
		case 4: // negative, with an expiry
			err = c.Set(ctx, p+k, -3, time.Hour).Err()
		case 5, 6, 7: // at an edge, with or without an expiry
			err = c.Set(ctx, p+k, edge, time.Duration(v%2)*time.Hour).Err()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// keyState is what the differential tests compare per key: its value (or
// type) and its expiry to the second (every TTL the tests set is whole
// seconds, and the two sides run milliseconds apart).
func keyState(ctx context.Context, c goredis.UniversalClient, key string) (string, string, time.Duration, error) {
	typ, err := c.Type(ctx, key).Result()
	if err != nil {
		return "", "", 0, err
	}
	val := typ
	if typ == "string" {
		if val, err = c.Get(ctx, key).Result(); err != nil {
			return "", "", 0, err
		}
	}
	ms, err := c.PTTL(ctx, key).Result()
	if err != nil {
		return "", "", 0, err
	}
	switch {
	case ms == -2*time.Nanosecond || typ == "none":
		return val, "missing", 0, nil
	case ms < 0:
		return val, "no-expiry", 0, nil
	}
	return val, "expires", ms, nil
}

// ttlSlack is how far two keys' remaining lives may differ and still count
// as the same expiry: the old and new keys are written and read a few
// milliseconds apart (more on a loaded machine), and the TTLs the tests
// give differ by 10 s or more.
const ttlSlack = 2 * time.Second

// runDifferential drives random rounds of calls, each round one shared
// pipeline (ExecBatch), against the store under test ("new:" keys) and
// the oracle ("old:" keys) on the same Redis, and compares every call's
// outcome, every count and decision, and every key's value and expiry.
func runDifferential(t *testing.T, c goredis.UniversalClient, s *rlredis.Store, seed uint64, rounds int, flush func()) {
	runShape(t, c, s, seed, rounds, flush, mixedShape)
}

// shape is how a differential run draws its batches.
type shape struct {
	calls, ops int // at most, per batch and per call
	op         func(rng *rand.Rand, prefix string) ratelimit.Op
	plant      func(t *testing.T, ctx context.Context, c goredis.UniversalClient, rng *rand.Rand, prefixes ...string)
	plantEvery int // plant before one round in plantEvery
}

// mixedShape: small batches over ten counters and a few decisions.
var mixedShape = shape{calls: 8, ops: 4, op: diffOp, plant: plant, plantEvery: 4}

// hotShape: big batches whose counters mostly share a key or two (a
// global or per-route limit every check counts), the same key with
// different TTLs and zero hits, the hot keys often left broken (another
// type, not an integer, no expiry) or near the edges of an exact
// increment, and a decision now and then.
var hotShape = shape{calls: 24, ops: 6, op: hotOp, plantEvery: 2,
	plant: func(t *testing.T, ctx context.Context, c goredis.UniversalClient, rng *rand.Rand, prefixes ...string) {
		plantKind(t, ctx, c, rng, 3, 8, prefixes...)
	}}

func hotOp(rng *rand.Rand, prefix string) ratelimit.Op {
	if rng.IntN(12) == 0 {
		return diffOp(rng, prefix) // a decision, or a counter of the cold ten
	}
	k := []int{0, 0, 0, 0, 0, 1, 1, 2}[rng.IntN(8)]
	hits := []uint64{0, 0, 1, 1, 1, 1, 2, 7, ratelimit.MaxHits}[rng.IntN(9)]
	ttl := []time.Duration{10 * time.Second, time.Minute, time.Hour, 24 * time.Hour}[rng.IntN(4)]
	return ratelimit.Op{Key: prefix + "k" + strconv.Itoa(k), Hits: hits, TTL: ttl}
}

func runShape(t *testing.T, c goredis.UniversalClient, s *rlredis.Store, seed uint64, rounds int, flush func(), sh shape) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 20))
	tag := ratelimitTestTag(t, seed)
	pNew, pOld := tag+"new:", tag+"old:"
	alone := rlredis.New(c, rlredis.Options{})
	for round := range rounds {
		if rng.IntN(sh.plantEvery) == 0 {
			sh.plant(t, ctx, c, rng, pNew, pOld)
		}
		if flush != nil && rng.IntN(6) == 0 {
			flush() // the next batch meets NOSCRIPT and sends the bodies
		}
		calls := make([][]ratelimit.Op, 1+rng.IntN(sh.calls))
		for i := range calls {
			calls[i] = make([]ratelimit.Op, 1+rng.IntN(sh.ops))
			for j := range calls[i] {
				calls[i][j] = sh.op(rng, pNew)
			}
		}
		want := make([][]ratelimit.Op, len(calls))
		wantErr := make([]error, len(calls))
		for i := range calls {
			want[i] = cloneOps(calls[i], pNew, pOld)
			wantErr[i] = oracleCall(ctx, c, alone, want[i])
		}
		errs := s.ExecBatch(ctx, calls)
		for i := range calls {
			if (errs[i] == nil) != (wantErr[i] == nil) {
				t.Fatalf("seed %d round %d call %d: error %v, the old script's %v", seed, round, i, errs[i], wantErr[i])
			}
			if errs[i] != nil {
				continue
			}
			for j := range calls[i] {
				got, w := calls[i][j], want[i][j]
				if got.Count != w.Count || got.Denied != w.Denied {
					t.Fatalf("seed %d round %d call %d op %d: count %d denied %v, the old script's %d %v", seed, round, i, j, got.Count, got.Denied, w.Count, w.Denied)
				}
				for k := range got.Windows {
					if gv, wv := got.Windows[k].Verdict, w.Windows[k].Verdict; gv != wv {
						t.Fatalf("seed %d round %d call %d op %d window %d: %+v, want %+v", seed, round, i, j, k, gv, wv)
					}
				}
			}
		}
		for k := range diffKeys {
			name := "k" + strconv.Itoa(k)
			gv, gs, gt, err := keyState(ctx, c, pNew+name)
			if err != nil {
				t.Fatal(err)
			}
			wv, ws, wt, err := keyState(ctx, c, pOld+name)
			if err != nil {
				t.Fatal(err)
			}
			if gv != wv || gs != ws || (gt-wt).Abs() > ttlSlack {
				t.Fatalf("seed %d round %d key %s: %q %s %v, the old script's %q %s %v", seed, round, name, gv, gs, gt, wv, ws, wt)
			}
		}
	}
}

// ratelimitTestTag keeps each test's and seed's keys apart, in one Cluster
// slot per side's decision keys (the {d…} tags) as decisions need.
func ratelimitTestTag(t *testing.T, seed uint64) string {
	return fmt.Sprintf("diff:%s:%d:", t.Name(), seed)
}

// TestDifferentialBatchScript: one script per pipeline (standalone) and
// one per counter (PerOpScripts, the Cluster path) against the old
// per-counter script, on random sequences that mix counters, decisions,
// zero and huge hits, counters left without an expiry, not integers or of
// another type, and lost script caches.
func TestDifferentialBatchScript(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv.Addr)
	flush := func() {
		if _, err := srv.Do("SCRIPT", "FLUSH"); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []struct {
		name string
		opts rlredis.Options
	}{{"batch-script", rlredis.Options{}}, {"per-op-scripts", rlredis.Options{PerOpScripts: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			s := rlredis.New(c, mode.opts)
			for seed := range uint64(12) {
				runDifferential(t, c, s, seed, 40, flush)
			}
		})
	}
}

// TestDifferentialCluster: the Cluster client's path against the old
// script on a real 3-master Cluster.
func TestDifferentialCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := client(t, cl.Addrs()...)
	flush := func() {
		for _, srv := range cl.Servers {
			if _, err := srv.Do("SCRIPT", "FLUSH"); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := rlredis.New(c, rlredis.Options{})
	for seed := range uint64(4) {
		runDifferential(t, c, s, seed, 30, flush)
	}
}

// TestDifferentialHotKeys: batches whose counters share keys (coalesced
// into one increment per key by the batch script) against the old
// per-counter script run one op at a time, including keys that fail, or
// whose values overflow or leave ±2^53 part-way through the batch.
func TestDifferentialHotKeys(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv.Addr)
	flush := func() {
		if _, err := srv.Do("SCRIPT", "FLUSH"); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []struct {
		name string
		opts rlredis.Options
	}{{"batch-script", rlredis.Options{}}, {"per-op-scripts", rlredis.Options{PerOpScripts: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			s := rlredis.New(c, mode.opts)
			for seed := range uint64(16) {
				runShape(t, c, s, seed, 40, flush, hotShape)
			}
		})
	}
}
