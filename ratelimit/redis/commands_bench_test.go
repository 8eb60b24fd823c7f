package redis_test

import (
	"context"
	"strconv"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/benchcpu"
	"github.com/ext-authz/ext-authz/internal/redistest"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
)

// exScript is the per-counter script (rlredis's script).
var exScript = goredis.NewScript(`
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
`)

// exBatch is a per-pipeline script over many counters (rlredis's
// batchScript without its error list).
var exBatch = goredis.NewScript(`
local out = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  local n = redis.pcall('INCRBY', k, ARGV[2*i-1])
  if type(n) == 'table' then n = -1 end
  if redis.call('PTTL', k) < 0 then
    redis.call('PEXPIRE', k, ARGV[2*i])
  end
  out[i] = n
end
return out
`)

// BenchmarkCounterCommands compares, in one run on one redis-server, the
// ways to send a pipeline of counter increments that each also set an
// expiry when the key has none, by the client's CPU (cpu-ns/op), its
// allocations and redis-server's CPU (redis-cpu-ns/op), per counter:
//
//   - evalsha: the per-counter script, by SHA (go-redis Script.EvalSha);
//   - evalsha-int: the same, as an IntCmd (no boxed reply);
//   - incr-nx: plain INCRBY and PEXPIRE … NX (Redis ≥ 7.0), pipelined;
//   - multi-incr-nx: the same inside MULTI/EXEC (atomic, as the scripts);
//   - batch-script: one script for every counter of the pipeline.
//
// Loadtest keys of the jwt-redis shape, 2,000 of them in turn (existing
// keys, as under load). The numbers are in loadtest/RESULTS.md.
func BenchmarkCounterCommands(b *testing.B) {
	srv := redistest.Start(b)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	_ = exScript.Load(ctx, c).Err()
	_ = exBatch.Load(ctx, c).Err()
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = "8:loadtest11:generic_key7:limited4:user9:user-" + strconv.Itoa(100000+i) + "|1|1700000040"
	}
	for _, batch := range []int{2, 16, 64} {
		for _, v := range []string{"evalsha", "evalsha-int", "incr-nx", "multi-incr-nx", "batch-script"} {
			b.Run("batch="+strconv.Itoa(batch)+"/"+v, func(b *testing.B) {
				benchcpu.Report(b)
				start := redisCPU(b, srv)
				b.ReportAllocs()
				k := 0
				for i := 0; i < b.N; i += batch {
					ks := make([]string, batch)
					for j := range ks {
						ks[j] = keys[k%len(keys)]
						k++
					}
					switch v {
					case "evalsha":
						cmds := make([]*goredis.Cmd, batch)
						_, _ = c.Pipelined(ctx, func(p goredis.Pipeliner) error {
							for j := range ks {
								cmds[j] = exScript.EvalSha(ctx, p, []string{ks[j]}, uint64(1), int64(1000))
							}
							return nil
						})
						for _, cmd := range cmds {
							if _, err := cmd.Int64(); err != nil {
								b.Fatal(err)
							}
						}
					case "evalsha-int":
						cmds := make([]*goredis.IntCmd, batch)
						_, _ = c.Pipelined(ctx, func(p goredis.Pipeliner) error {
							for j := range ks {
								cmds[j] = goredis.NewIntCmd(ctx, "evalsha", exScript.Hash(), 1, ks[j], uint64(1), int64(1000))
								_ = p.Process(ctx, cmds[j])
							}
							return nil
						})
						for _, cmd := range cmds {
							if err := cmd.Err(); err != nil {
								b.Fatal(err)
							}
						}
					case "incr-nx", "multi-incr-nx":
						cmds := make([]*goredis.IntCmd, batch)
						f := c.Pipelined
						if v == "multi-incr-nx" {
							f = c.TxPipelined
						}
						_, err := f(ctx, func(p goredis.Pipeliner) error {
							for j := range ks {
								cmds[j] = p.IncrBy(ctx, ks[j], 1)
								p.Do(ctx, "pexpire", ks[j], 1000, "nx")
							}
							return nil
						})
						if err != nil {
							b.Fatal(err)
						}
					case "batch-script":
						args := make([]any, 0, 3+3*batch)
						args = append(args, "evalsha", exBatch.Hash(), batch)
						for j := range ks {
							args = append(args, ks[j])
						}
						for range ks {
							args = append(args, uint64(1), int64(1000))
						}
						cmd := goredis.NewIntSliceCmd(ctx, args...)
						_ = c.Process(ctx, cmd)
						if err := cmd.Err(); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric((redisCPU(b, srv)-start)*1e9/float64(b.N), "redis-cpu-ns/op")
			})
		}
	}
}

// oldBatchSrc is the batch script of main before same-key counters were
// coalesced (7916e58), copied verbatim.
const oldBatchSrc = `
local out = {}
local bad = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  local n = redis.pcall('INCRBY', k, ARGV[2*i-1])
  if type(n) == 'table' then
    n = 0
    bad[#bad+1] = i
  elseif redis.call('PTTL', k) < 0 then
    redis.call('PEXPIRE', k, ARGV[2*i])
  end
  out[i] = n
end
for j = 1, #bad do
  out[#out+1] = bad[j]
end
return out
`

// BenchmarkHotKeyBatch is the batch script's work for the jwt-redis
// traffic: per check two counters, one per user and one global key that
// every check of the batch shares, per check (cpu-ns/op: this process,
// redis-cpu-ns/op: redis-server). Variants:
//
//   - old: the batch script before coalescing, every counter on its own;
//   - grouped: the store's batch script with the arguments the store
//     sends: the global key once, with the total, its TTL negated, and
//     the counters' hits (the client's grouping itself is measured by
//     BenchmarkStoreCPU, not here);
//   - distinct: the old script sent each distinct key once with its total
//     (the least a coalesced batch can send).
func BenchmarkHotKeyBatch(b *testing.B) {
	srv := redistest.Start(b)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	scripts := map[string]*goredis.Script{
		"old": goredis.NewScript(oldBatchSrc), "grouped": goredis.NewScript(rlredis.ScriptSources[1]),
		"distinct": goredis.NewScript(oldBatchSrc),
	}
	for _, s := range scripts {
		if err := s.Load(ctx, c).Err(); err != nil {
			b.Fatal(err)
		}
	}
	users := make([]string, 1000)
	for i := range users {
		users[i] = "8:loadtest11:generic_key7:limited4:user9:user-" + strconv.Itoa(100+i) + "|1|1700000040"
	}
	const global = "8:loadtest11:generic_key14:limited-global|1|1700000040"
	for _, checks := range []int{2, 13, 40} {
		for _, v := range []string{"old", "grouped", "distinct"} {
			b.Run("checks="+strconv.Itoa(checks)+"/"+v, func(b *testing.B) {
				benchcpu.Report(b)
				start := redisCPU(b, srv)
				b.ReportAllocs()
				u := 0
				for i := 0; i < b.N; i += checks {
					args := make([]any, 0, 3+6*checks)
					args = append(args, "evalsha", scripts[v].Hash(), 0)
					var hits []any
					for range checks {
						args = append(args, users[u%len(users)])
						hits = append(hits, uint64(1), int64(60000))
						u++
						if v == "old" {
							args = append(args, global)
							hits = append(hits, uint64(1), int64(60000))
						}
					}
					switch v {
					case "distinct":
						args = append(args, global)
						hits = append(hits, uint64(checks), int64(60000))
					case "grouped":
						args = append(args, global)
						hits = append(hits, uint64(checks), int64(-60000))
					}
					args[2] = len(hits) / 2
					args = append(args, hits...)
					if v == "grouped" {
						args = append(args, checks)
						for range checks {
							args = append(args, uint64(1))
						}
					}
					cmd := goredis.NewIntSliceCmd(ctx, args...)
					_ = c.Process(ctx, cmd)
					if err := cmd.Err(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric((redisCPU(b, srv)-start)*1e9/float64(b.N), "redis-cpu-ns/op")
			})
		}
	}
}
