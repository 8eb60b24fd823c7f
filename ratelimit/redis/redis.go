package redis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// script increments one counter and gives it an expiry if it has none (a
// new key, or one some other writer left without a TTL).
var script = goredis.NewScript(`
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
`)

// Options are the optional parts of a Store; the zero value works.
type Options struct {
	// MaxBatchOps caps the increments in one shared pipeline; default 256.
	MaxBatchOps int
	// Workers is how many shared pipelines may be in flight; default 4.
	Workers int
	// NoBatching makes Increment send its own pipeline even while Run is
	// running (for comparison benchmarks).
	NoBatching bool
}

// Store is a ratelimit.Store in Redis.
type Store struct {
	client   goredis.UniversalClient
	maxOps   int
	workers  int
	batching bool
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
	s := &Store{client: client, maxOps: opts.MaxBatchOps, workers: opts.Workers, batching: !opts.NoBatching}
	if s.maxOps <= 0 {
		s.maxOps = 256
	}
	if s.workers <= 0 {
		s.workers = 4
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
	_ = script.Load(lctx, s.client).Err()
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
	drain:
		for n < s.maxOps {
			select {
			case c := <-s.calls:
				batch = append(batch, c)
				n += len(c.ops)
			default:
				break drain
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
// or err. Ops that failed with NOSCRIPT (the node restarted or failed over
// and lost its script cache) did not run; they are sent again with the
// script's body.
func (s *Store) exec(ctx context.Context, calls []*call) {
	total := 0
	for _, c := range calls {
		total += len(c.ops)
	}
	cmds := make([]*goredis.Cmd, 0, total)
	refs := make([]*ratelimit.Op, 0, total)
	_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, c := range calls {
			for i := range c.ops {
				refs = append(refs, &c.ops[i])
				if len(c.ops[i].Windows) > 0 {
					cmds = append(cmds, evalDecide(ctx, p, &c.ops[i], true))
				} else {
					cmds = append(cmds, evalOp(ctx, p, &c.ops[i], true))
				}
			}
		}
		return nil
	})
	if hasNoScript(cmds) {
		// EVAL with the body runs the script and caches it on that node:
		// one more round trip, not two.
		_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, cmd := range cmds {
				switch {
				case !isNoScript(cmd.Err()):
				case len(refs[i].Windows) > 0:
					cmds[i] = evalDecide(ctx, p, refs[i], false)
				default:
					cmds[i] = evalOp(ctx, p, refs[i], false)
				}
			}
			return nil
		})
	}
	k := 0
	for _, c := range calls {
		r := 0
		for i := range c.ops {
			cmd := cmds[k]
			k++
			if len(c.ops[i].Windows) == 0 {
				n, err := cmd.Int64()
				if err != nil {
					c.fail(err)
				}
				c.res[r] = n
				r++
				continue
			}
			want := decideResults(&c.ops[i])
			if err := decisionReply(cmd, c.res[r:r+want]); err != nil {
				c.fail(err)
			}
			r += want
		}
	}
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

// evalOp queues the script for op: by its SHA, or with its body.
func evalOp(ctx context.Context, p goredis.Pipeliner, op *ratelimit.Op, bySHA bool) *goredis.Cmd {
	ttl := op.TTL.Milliseconds()
	if ttl < 1 {
		ttl = 1
	}
	if bySHA {
		return script.EvalSha(ctx, p, []string{op.Key}, op.Hits, ttl)
	}
	return script.Eval(ctx, p, []string{op.Key}, op.Hits, ttl)
}

func hasNoScript(cmds []*goredis.Cmd) bool {
	for _, c := range cmds {
		if isNoScript(c.Err()) {
			return true
		}
	}
	return false
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
