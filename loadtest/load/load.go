package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Call sends one request and classifies its answer: outcome names the
// decision ("ok", "unauthenticated", ...). A non-nil error is a failed
// call (transport error, deadline); it is counted under the outcome
// "error" unless outcome is set. Call must be safe for concurrent use; seq
// numbers the requests of a run from 0.
type Call func(ctx context.Context, seq uint64) (outcome string, err error)

// Options shape a run. The zero value runs one worker closed loop for one
// second.
type Options struct {
	// Workers is the closed-loop concurrency, or in open loop the most
	// requests in flight at once. Default 1 (closed), 256 (open).
	Workers int
	// Duration is the measured part of the run. Default 1s.
	Duration time.Duration
	// Warmup runs the load first without measuring it (connections,
	// caches, the Go scheduler). Default 0.
	Warmup time.Duration
	// Rate, when positive, makes the run open loop at this many requests
	// per second.
	Rate float64
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Result summarises a run.
type Result struct {
	Mode     string        // "closed" or "open"
	Workers  int           // concurrency (closed) or in-flight bound (open)
	Rate     float64       // target rate (open)
	Elapsed  time.Duration // measured wall time
	Requests uint64        // answered requests in the measured part
	Errors   uint64        // of which failed calls
	// Throughput is Requests per second of Elapsed.
	Throughput float64
	// Latency percentiles. In open loop they are measured from the
	// scheduled send time. They include the Cut calls, each with the time
	// it had waited when the measured part ended (a lower bound).
	P50, P90, P99, P999, Max time.Duration
	// Cut counts calls sent in the measured part and not answered by its
	// end; they are not in Requests, Mix or Throughput.
	Cut uint64
	// Mix counts outcomes.
	Mix map[string]uint64
	// Late counts open-loop requests sent more than 1ms after their
	// scheduled time because every worker was busy: the generator or the
	// server could not keep up with Rate.
	Late uint64
}

// Run drives call for opts.Warmup+opts.Duration, or until ctx ends (the
// result then covers the part measured so far and the error is ctx's).
func Run(ctx context.Context, call Call, opts Options) (Result, error) {
	if opts.Duration <= 0 {
		opts.Duration = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rate < 0 || math.IsNaN(opts.Rate) || math.IsInf(opts.Rate, 0) {
		return Result{}, fmt.Errorf("rate %v must be a positive number or 0 (closed loop)", opts.Rate)
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
		if opts.Rate > 0 {
			opts.Workers = 256
		}
	}
	r := &run{call: call, opts: opts, rec: make([]recorder, opts.Workers)}
	for i := range r.rec {
		r.rec[i].mix = map[string]uint64{}
	}
	if opts.Rate > 0 {
		return r.open(ctx)
	}
	return r.closed(ctx)
}

type run struct {
	call Call
	opts Options
	seq  atomic.Uint64
	rec  []recorder // one per worker: no sharing on the hot path
	// measureFrom is when measuring starts (after warm-up), set before
	// any worker starts.
	measureFrom time.Time
	end         time.Time
}

// recorder keeps one worker's measurements.
type recorder struct {
	lat    []time.Duration
	mix    map[string]uint64
	errors uint64
	late   uint64
	// cut holds, for calls started in the measured part but still
	// unanswered when it ended, how long they had waited by then: a lower
	// bound on their latency, kept so that a stall at the end of a round
	// shows in its percentiles instead of vanishing with the calls.
	cut []time.Duration
	_   [64]byte // keep workers' recorders on separate cache lines
}

func (rc *recorder) record(outcome string, err error, lat time.Duration) {
	if err != nil {
		rc.errors++
		if outcome == "" {
			outcome = "error"
		}
	}
	rc.lat = append(rc.lat, lat)
	rc.mix[outcome]++
}

func (r *run) closed(ctx context.Context) (Result, error) {
	start := r.opts.Now()
	r.measureFrom = start.Add(r.opts.Warmup)
	r.end = r.measureFrom.Add(r.opts.Duration)
	ctx, cancel := context.WithDeadline(ctx, r.end)
	defer cancel()
	var wg sync.WaitGroup
	for w := range r.opts.Workers {
		wg.Go(func() {
			rc := &r.rec[w]
			for ctx.Err() == nil {
				seq := r.seq.Add(1) - 1
				t0 := r.opts.Now()
				outcome, err := r.call(ctx, seq)
				t1 := r.opts.Now()
				if t0.Before(r.measureFrom) || !t0.Before(r.end) {
					continue // warm-up, or sent after the end (the deadline's timer ran late)
				}
				if t1.After(r.end) {
					rc.cut = append(rc.cut, r.end.Sub(t0))
					continue
				}
				rc.record(outcome, err, t1.Sub(t0))
			}
		})
	}
	wg.Wait()
	return r.result("closed", parentErr(ctx))
}

// open schedules request i at start + i/rate. A scheduler goroutine hands
// due send times to a pool of workers; a worker measures from the send
// time it was handed, so time spent waiting for a free worker counts.
func (r *run) open(ctx context.Context) (Result, error) {
	start := r.opts.Now()
	r.measureFrom = start.Add(r.opts.Warmup)
	r.end = r.measureFrom.Add(r.opts.Duration)
	ctx, cancel := context.WithDeadline(ctx, r.end)
	defer cancel()
	interval := time.Duration(float64(time.Second) / r.opts.Rate)
	if interval <= 0 {
		interval = 1
	}
	due := make(chan time.Time, r.opts.Workers*4)
	var wg sync.WaitGroup
	for w := range r.opts.Workers {
		wg.Go(func() {
			rc := &r.rec[w]
			for sched := range due {
				t0 := r.opts.Now()
				if t0.Sub(sched) > time.Millisecond {
					rc.late++
				}
				outcome, err := r.call(ctx, r.seq.Add(1)-1)
				t1 := r.opts.Now()
				if sched.Before(r.measureFrom) || !sched.Before(r.end) {
					continue
				}
				if t1.After(r.end) {
					rc.cut = append(rc.cut, r.end.Sub(sched))
					continue
				}
				rc.record(outcome, err, t1.Sub(sched))
			}
		})
	}
	// Wake up every millisecond (or per request at low rates) and release
	// every request due by then: sleeping per request is too coarse at
	// tens of thousands per second.
	tick := max(interval, time.Millisecond)
	next := start
schedule:
	for {
		now := r.opts.Now()
		for !next.After(now) {
			if !next.Before(r.end) {
				break schedule
			}
			select {
			case due <- next:
			case <-ctx.Done():
				break schedule
			}
			next = next.Add(interval)
		}
		t := time.NewTimer(min(tick, next.Sub(now)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			break schedule
		}
	}
	close(due)
	wg.Wait()
	return r.result("open", parentErr(ctx))
}

// parentErr is ctx's error unless it is only the run's own deadline.
func parentErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if cause := context.Cause(ctx); errors.Is(cause, context.DeadlineExceeded) {
			return nil
		}
	}
	return ctx.Err()
}

func (r *run) result(mode string, err error) (Result, error) {
	res := Result{Mode: mode, Workers: r.opts.Workers, Rate: r.opts.Rate, Mix: map[string]uint64{}}
	var n, cut int
	for i := range r.rec {
		n += len(r.rec[i].lat)
		cut += len(r.rec[i].cut)
	}
	all := make([]time.Duration, 0, n+cut)
	for i := range r.rec {
		rc := &r.rec[i]
		all = append(all, rc.lat...)
		res.Errors += rc.errors
		res.Late += rc.late
		for k, v := range rc.mix {
			res.Mix[k] += v
		}
	}
	res.Requests = uint64(len(all))
	for i := range r.rec {
		all = append(all, r.rec[i].cut...)
	}
	res.Cut = uint64(cut)
	res.Elapsed = r.opts.Duration
	if now := r.opts.Now(); now.Before(r.end) {
		res.Elapsed = max(now.Sub(r.measureFrom), 0)
	}
	if res.Elapsed > 0 {
		res.Throughput = float64(res.Requests) / res.Elapsed.Seconds()
	}
	slices.Sort(all)
	res.P50 = Percentile(all, 50)
	res.P90 = Percentile(all, 90)
	res.P99 = Percentile(all, 99)
	res.P999 = Percentile(all, 99.9)
	if len(all) > 0 {
		res.Max = all[len(all)-1]
	}
	return res, err
}

// Percentile returns the p-th percentile (nearest rank) of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// MixString renders the outcome mix as "ok=98.0% unauthenticated=2.0%",
// largest first.
func (r Result) MixString() string {
	type kv struct {
		k string
		v uint64
	}
	var total uint64
	kvs := make([]kv, 0, len(r.Mix))
	for k, v := range r.Mix {
		kvs = append(kvs, kv{k, v})
		total += v
	}
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].v != kvs[j].v {
			return kvs[i].v > kvs[j].v
		}
		return kvs[i].k < kvs[j].k
	})
	parts := make([]string, len(kvs))
	for i, e := range kvs {
		parts[i] = fmt.Sprintf("%s=%.1f%%", e.k, 100*float64(e.v)/float64(total))
	}
	return strings.Join(parts, " ")
}
