package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// script increments one counter and gives it an expiry if it has none (a
// new key, or one some other writer left without a TTL). It is the path of
// a counter on Redis Cluster (and with Options.PerOpScripts): each script
// touches one key, so the keys of one check may live on different nodes.
var script = goredis.NewScript(scriptSrc)

const scriptSrc = `
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
`

// batchScript is script for every counter of a shared pipeline at once,
// on a standalone or sentinel Redis where one script may touch any key:
// one EVALSHA per round trip instead of one per counter, so Redis runs the
// script machinery once per batch, and the client sends and parses one
// command. Each counter gets exactly script's treatment (the counts are
// the same, the expiry is set in the same step as the increment, and the
// whole batch is atomic, so a dropped connection cannot leave a counter
// without its TTL either). A counter whose INCRBY fails (a key of another
// type, or not an integer) fails alone, as it does with script: pcall
// keeps the others going.
//
// Counters of the same key (a global or per-route limit that every check
// of the batch counts) are coalesced by exec: the key is sent once, with
// the total of its counters' hits, and one INCRBY of the total gives each
// counter the count it would have seen had the increments run one after
// another in batch order (the script is atomic, so nobody can tell the
// difference); the expiry, when the key has none, is the first counter's,
// as it would be then. Where the coalesced increment fails or its numbers
// leave the integers a Lua number holds exactly (±2^53), the key's
// counters run one at a time instead (after undoing the increment if it
// took place): the same counts and errors as script's, in every case.
//
// KEYS: the distinct keys. ARGV: per key, hits and TTL (ms) for a key of
// one counter; for a key of several, the total and the TTL negated; then,
// for each key of several in KEYS order, its number of counters and their
// hits. Reply: per counter its count (0 where it failed), in KEYS order
// and within a key in batch order; then the 1-based position of every
// counter that failed.
var batchScript = goredis.NewScript(batchScriptSrc)

const batchScriptSrc = `
local out = {}
local bad = {}
local function one(k, hits, ttl)
  local n = redis.pcall('INCRBY', k, hits)
  if type(n) == 'table' then
    n = 0
    bad[#bad+1] = #out+1
  elseif redis.call('PTTL', k) < 0 then
    redis.call('PEXPIRE', k, ttl)
  end
  out[#out+1] = n
end
local exact = 9007199254740992
local pos = 2*#KEYS + 1
for i = 1, #KEYS do
  local k = KEYS[i]
  local ttl = ARGV[2*i]
  if string.byte(ttl) ~= 45 then
    one(k, ARGV[2*i-1], ttl)
  else
    ttl = string.sub(ttl, 2)
    local by = ARGV[2*i-1]
    local total = tonumber(by)
    local m = tonumber(ARGV[pos])
    local n = false
    if total < exact then
      n = redis.pcall('INCRBY', k, by)
      if type(n) == 'table' then
        n = false
      elseif n >= exact or n - total <= -exact then
        redis.call('DECRBY', k, by)
        n = false
      end
    end
    if n then
      if redis.call('PTTL', k) < 0 then
        redis.call('PEXPIRE', k, ttl)
      end
      n = n - total
      for j = pos+1, pos+m do
        n = n + tonumber(ARGV[j])
        out[#out+1] = n
      end
    else
      for j = pos+1, pos+m do
        one(k, ARGV[j], ttl)
      end
    end
    pos = pos + m + 1
  end
end
for j = 1, #bad do
  out[#out+1] = bad[j]
end
return out
`

// errCounter answers the ops whose INCRBY failed inside batchScript.
var errCounter = errors.New("counter is not an integer (INCRBY failed)")

// Options are the optional parts of a Store; the zero value works.
type Options struct {
	// MaxBatchOps caps the increments in one shared pipeline; default 256.
	MaxBatchOps int
	// Workers is how many shared pipelines may be in flight; default 4.
	Workers int
	// NoBatching makes Increment send its own pipeline even while Run is
	// running (for comparison benchmarks).
	NoBatching bool
	// Yields is how many times a worker that found fewer calls queued
	// than MaxBatchOps yields the processor to the other ready goroutines
	// before it sends them, so that checks about to call Increment join
	// the round trip; default 1, negative for none.
	Yields int
	// PerOpScripts sends one script per counter even on a standalone or
	// sentinel client, where one script per pipeline serves them all: what
	// a Cluster client always does (for comparison benchmarks and tests).
	PerOpScripts bool
}

// Store is a ratelimit.Store in Redis.
type Store struct {
	client   goredis.UniversalClient
	maxOps   int
	workers  int
	yields   int
	batching bool
	// perOp: one script per counter (Cluster, whose keys of one batch
	// live in different slots), else one batchScript per pipeline.
	perOp bool
	// mu orders sends on calls against Run stopping: senders hold it for
	// reading, so once Run has cleared running under the write lock no new
	// call can be queued and Run can answer the queued ones.
	mu      sync.RWMutex
	running int
	calls   chan *call
}

var _ ratelimit.Store = (*Store)(nil)

// New returns a Store over client. It starts no goroutine: Run batches
// concurrent calls; without Run each call sends its own pipeline.
//
// The client must have ContextTimeoutEnabled (internal/redisconf sets it):
// otherwise go-redis bounds network reads by its ReadTimeout, not by the
// caller's deadline, and a stalled Redis would hold a check for seconds.
func New(client goredis.UniversalClient, opts Options) *Store {
	s := &Store{client: client, maxOps: opts.MaxBatchOps, workers: opts.Workers, batching: !opts.NoBatching, perOp: opts.PerOpScripts}
	if _, single := client.(*goredis.Client); !single {
		// Cluster (and Ring) clients route each command by its first key:
		// a script over many keys would be refused (CROSSSLOT).
		s.perOp = true
	}
	if s.maxOps <= 0 {
		s.maxOps = 256
	}
	if s.workers <= 0 {
		s.workers = 4
	}
	switch {
	case opts.Yields == 0:
		s.yields = 1
	case opts.Yields > 0:
		s.yields = opts.Yields
	}
	s.calls = make(chan *call, 1024)
	return s
}

// call is one Increment waiting for a shared pipeline.
type call struct {
	ctx context.Context
	ops []ratelimit.Op
	// res holds the replies, per op in order: its count, or a decision's
	// numbers (decideResults). The caller's ops are written only by
	// finish, so a call abandoned at its deadline never touches them.
	res  []int64
	err  error
	done chan struct{}
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// Increment implements ratelimit.Store.
func (s *Store) Increment(ctx context.Context, ops []ratelimit.Op) error {
	if len(ops) == 0 {
		return nil
	}
	c := callPool.Get().(*call)
	c.ctx, c.ops, c.err = ctx, ops, nil
	n := 0
	for i := range ops {
		n += results(&ops[i])
	}
	c.res = slices.Grow(c.res[:0], n)[:n]
	queued := false
	if s.batching {
		s.mu.RLock()
		if s.running > 0 {
			select {
			case s.calls <- c:
				queued = true
			default: // queue full: do not wait, send alone
			}
		}
		s.mu.RUnlock()
	}
	if !queued {
		s.exec(ctx, []*call{c})
		return s.finish(c, ops)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		// The worker still owns c and will finish with it; it is not
		// returned to the pool.
		return ctx.Err()
	}
	return s.finish(c, ops)
}

// finish copies a completed call's counts into ops and recycles it.
func (s *Store) finish(c *call, ops []ratelimit.Op) error {
	err := c.err
	if err == nil {
		k := 0
		for i := range ops {
			op := &ops[i]
			if len(op.Windows) > 0 {
				setDecision(op, c.res[k:k+decideResults(op)])
			} else {
				op.Count = uint64(c.res[k])
			}
			k += results(op)
		}
	}
	c.ctx, c.ops = nil, nil
	callPool.Put(c)
	return err
}

// Run batches concurrent Increment calls into shared pipelines until ctx
// ends; it returns nil then. Calls queued when it stops are sent on their
// own, as are later calls.
func (s *Store) Run(ctx context.Context) error {
	// Load the script up front (best effort) so the first checks do not
	// pay the NOSCRIPT round trips.
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if s.perOp {
		_ = script.Load(lctx, s.client).Err()
	} else {
		_ = batchScript.Load(lctx, s.client).Err()
	}
	_ = decideScript.Load(lctx, s.client).Err()
	cancel()
	s.mu.Lock()
	s.running++
	s.mu.Unlock()
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() { s.work(ctx) })
	}
	wg.Wait()
	// New calls now send their own pipelines; answer the ones still queued
	// the same way rather than leave them to their deadline.
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
	for {
		select {
		case c := <-s.calls:
			s.exec(c.ctx, []*call{c})
			c.done <- struct{}{}
		default:
			return nil
		}
	}
}

func (s *Store) work(ctx context.Context) {
	batch := make([]*call, 0, 64)
	for {
		var c *call
		select {
		case <-ctx.Done():
			return
		case c = <-s.calls:
		}
		batch = append(batch[:0], c)
		n := len(c.ops)
		yields := s.yields
	drain:
		for n < s.maxOps {
			select {
			case c := <-s.calls:
				batch = append(batch, c)
				n += len(c.ops)
			default:
				if yields <= 0 {
					break drain
				}
				// Let the goroutines that are ready to run (checks on
				// their way to Increment) run first: on a busy process
				// their calls join this round trip instead of paying one
				// of their own; on an idle one Gosched returns at once.
				yields--
				runtime.Gosched()
			}
		}
		live := batch[:0]
		for _, c := range batch {
			if err := c.ctx.Err(); err != nil {
				c.err = err
				c.done <- struct{}{}
				continue
			}
			live = append(live, c)
		}
		if len(live) == 0 {
			continue
		}
		pctx, cancel := batchContext(live)
		s.exec(pctx, live)
		cancel()
		for _, c := range live {
			c.done <- struct{}{}
		}
	}
}

// batchContext lives as long as the longest-waiting call in the batch.
func batchContext(calls []*call) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, c := range calls {
		d, ok := c.ctx.Deadline()
		if !ok {
			d = time.Now().Add(time.Second)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// exec sends every op of calls in one pipeline and sets each call's counts
// or err. The counters go in one batchScript (standalone, sentinel) or one
// script each (Cluster); every decision op is its own decideScript. Scripts
// that failed with NOSCRIPT (the node restarted or failed over and lost its
// script cache) did not run; they are sent again with their body.
func (s *Store) exec(ctx context.Context, calls []*call) {
	sc := scratchPool.Get().(*scratch)
	defer sc.put()
	plain := 0
	for _, c := range calls {
		for i := range c.ops {
			if len(c.ops[i].Windows) == 0 {
				plain++
			}
		}
	}
	// ttls holds the TTLs in ms that the commands point to: grown once, so
	// no pointer into it moves.
	sc.ttls = slices.Grow(sc.ttls[:0], plain)
	var counters *goredis.IntSliceCmd
	if !s.perOp && plain > 0 {
		counters = sc.counterCmd(ctx, calls, plain)
	}
	// cmds has one entry per op: its own command, or nil for a counter in
	// counters.
	cmds := sc.cmds[:0]
	_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if counters != nil {
			_ = p.Process(ctx, counters)
		}
		for _, c := range calls {
			for i := range c.ops {
				op := &c.ops[i]
				switch {
				case len(op.Windows) > 0:
					cmds = append(cmds, evalDecide(ctx, p, op, true))
				case s.perOp:
					sc.ttls = append(sc.ttls, ttlMS(op))
					cmd := goredis.NewIntCmd(ctx, "evalsha", script.Hash(), "1", &op.Key, &op.Hits, &sc.ttls[len(sc.ttls)-1])
					_ = p.Process(ctx, cmd)
					cmds = append(cmds, cmd)
				default:
					cmds = append(cmds, nil)
				}
			}
		}
		return nil
	})
	if (counters != nil && isNoScript(counters.Err())) || hasNoScript(cmds) {
		// EVAL with the body runs the script and caches it on that node:
		// one more round trip, not two.
		_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			if counters != nil && isNoScript(counters.Err()) {
				args := counters.Args()
				args[0], args[1] = "eval", batchScriptSrc
				counters = goredis.NewIntSliceCmd(ctx, args...)
				_ = p.Process(ctx, counters)
			}
			k := 0
			for _, c := range calls {
				for i := range c.ops {
					cmd := cmds[k]
					switch {
					case cmd == nil || !isNoScript(cmd.Err()):
					case len(c.ops[i].Windows) > 0:
						cmds[k] = evalDecide(ctx, p, &c.ops[i], false)
					default:
						args := cmd.Args()
						args[0], args[1] = "eval", scriptSrc
						cmds[k] = goredis.NewIntCmd(ctx, args...)
						_ = p.Process(ctx, cmds[k])
					}
					k++
				}
			}
			return nil
		})
	}
	var counts []int64
	var countsErr error
	if counters != nil {
		counts, countsErr = counterReplies(counters, plain)
	}
	k, pk := 0, 0
	for _, c := range calls {
		r := 0
		for i := range c.ops {
			cmd := cmds[k]
			k++
			if len(c.ops[i].Windows) > 0 {
				want := decideResults(&c.ops[i])
				if err := decisionReply(cmd.(*goredis.Cmd), c.res[r:r+want]); err != nil {
					c.fail(err)
				}
				r += want
				continue
			}
			var n int64
			var err error
			if cmd != nil {
				n, err = cmd.(*goredis.IntCmd).Result()
			} else if err = countsErr; err == nil {
				n = counts[sc.reply[pk]]
				if n == failedCount {
					n, err = 0, errCounter
				}
			}
			pk++
			if err != nil {
				c.fail(err)
			}
			c.res[r] = n
			r++
		}
	}
	sc.cmds = cmds
}

// failedCount marks, in counterReplies' result, a counter whose INCRBY
// failed; no count can be it (MaxHits keeps INCRBY far from it).
const failedCount = math.MinInt64

// counterReplies is batchScript's reply for n counters: their counts, with
// failedCount for each that failed.
func counterReplies(cmd *goredis.IntSliceCmd, n int) ([]int64, error) {
	v, err := cmd.Result()
	if err != nil {
		return nil, err
	}
	if len(v) < n {
		return nil, fmt.Errorf("batch reply of %d numbers for %d counters", len(v), n)
	}
	for _, i := range v[n:] {
		if i < 1 || i > int64(n) {
			return nil, fmt.Errorf("batch reply: failed counter %d of %d", i, n)
		}
		v[i-1] = failedCount
	}
	return v[:n], nil
}

// scratch is exec's reusable storage.
type scratch struct {
	args []any
	ttls []int64
	cmds []goredis.Cmder
	// The batch script's coalescing, per counter in batch order (plain
	// ops): the op, its key's group, the next counter of the same key
	// (-1: none), its position in the reply; per group its first and last
	// counter, its counters and their total hits.
	ops    []*ratelimit.Op
	group  []int32
	next   []int32
	reply  []int32
	groups []group
	ints   []int64
	byKey  map[string]int32
}

// group is the counters of one key in a batch script.
type group struct {
	first, last, n int32
	total          uint64
}

var scratchPool = sync.Pool{New: func() any { return &scratch{byKey: map[string]int32{}} }}

// counterCmd is the batch script for the plain counters of calls, with
// each distinct key once (see batchScript), and sets sc.reply.
func (sc *scratch) counterCmd(ctx context.Context, calls []*call, plain int) *goredis.IntSliceCmd {
	sc.ops, sc.group, sc.next, sc.groups = sc.ops[:0], sc.group[:0], sc.next[:0], sc.groups[:0]
	for _, c := range calls {
		for i := range c.ops {
			op := &c.ops[i]
			if len(op.Windows) > 0 {
				continue
			}
			k := int32(len(sc.ops))
			g, ok := sc.byKey[op.Key]
			if !ok {
				g = int32(len(sc.groups))
				sc.byKey[op.Key] = g
				sc.groups = append(sc.groups, group{first: k, last: k})
			} else {
				sc.next[sc.groups[g].last] = k
				sc.groups[g].last = k
			}
			sc.groups[g].n++
			sc.groups[g].total += op.Hits
			sc.ops = append(sc.ops, op)
			sc.group = append(sc.group, g)
			sc.next = append(sc.next, -1)
		}
	}
	clear(sc.byKey)
	// Reply positions: the groups' counters one after another.
	sc.reply = slices.Grow(sc.reply[:0], plain)[:plain]
	pos := int32(0)
	for gi := range sc.groups {
		for k := sc.groups[gi].first; k >= 0; k = sc.next[k] {
			sc.reply[k] = pos
			pos++
		}
	}
	// Pointers, not values: go-redis writes a *string, *uint64 or *int64
	// as the value, and boxing a pointer costs no allocation. ints holds
	// the numbers that are no op's own field; grown once, so no pointer
	// into it moves.
	sc.ints = slices.Grow(sc.ints[:0], 3*len(sc.groups))
	args := append(sc.args[:0], "evalsha", batchScript.Hash(), len(sc.groups))
	for gi := range sc.groups {
		args = append(args, &sc.ops[sc.groups[gi].first].Key)
	}
	for gi := range sc.groups {
		g := &sc.groups[gi]
		op := sc.ops[g.first]
		if g.n == 1 {
			sc.ints = append(sc.ints, ttlMS(op))
			args = append(args, &op.Hits, &sc.ints[len(sc.ints)-1])
			continue
		}
		sc.ints = append(sc.ints, int64(min(g.total, math.MaxInt64)), -ttlMS(op))
		args = append(args, &sc.ints[len(sc.ints)-2], &sc.ints[len(sc.ints)-1])
	}
	for gi := range sc.groups {
		g := &sc.groups[gi]
		if g.n == 1 {
			continue
		}
		sc.ints = append(sc.ints, int64(g.n))
		args = append(args, &sc.ints[len(sc.ints)-1])
		for k := g.first; k >= 0; k = sc.next[k] {
			args = append(args, &sc.ops[k].Hits)
		}
	}
	sc.args = args
	return goredis.NewIntSliceCmd(ctx, args...)
}

// put recycles sc without keeping anything of the batch alive.
func (sc *scratch) put() {
	clear(sc.args)
	clear(sc.cmds)
	clear(sc.ops)
	sc.args, sc.cmds, sc.ops = sc.args[:0], sc.cmds[:0], sc.ops[:0]
	scratchPool.Put(sc)
}

// fail records a call's first error.
func (c *call) fail(err error) {
	if c.err == nil {
		c.err = fmt.Errorf("redis: %w", err)
	}
}

// results is how many reply numbers op takes in call.res.
func results(op *ratelimit.Op) int {
	if len(op.Windows) > 0 {
		return decideResults(op)
	}
	return 1
}

// ttlMS is op's TTL in whole milliseconds, at least 1.
func ttlMS(op *ratelimit.Op) int64 {
	return max(1, op.TTL.Milliseconds())
}

func hasNoScript(cmds []goredis.Cmder) bool {
	for _, c := range cmds {
		if c != nil && isNoScript(c.Err()) {
			return true
		}
	}
	return false
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
