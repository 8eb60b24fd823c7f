package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Matcher finds the limit that applies to a descriptor of a domain, or nil
// when none does. ratelimit/envoyconfig implements it with
// envoyproxy/ratelimit's own matching. It must be safe for concurrent use
// and must not keep d.
type Matcher interface {
	Match(domain string, d *Descriptor) *Limit
}

// FailureMode says what a check answers when the store fails.
type FailureMode int

// Failure modes.
const (
	// FailClosed denies with the configured status (the default).
	FailClosed FailureMode = iota
	// FailOpen allows and counts the failure in metrics.
	FailOpen
)

// FailurePolicy is what one domain does when the store fails.
type FailurePolicy struct {
	Mode FailureMode
	// DenyStatus is the HTTP status of a closed failure: 503 (default,
	// Result.Code Unavailable) or 429 (Result.Code OverLimit).
	DenyStatus int
}

// Options are the optional parts of a Limiter; the zero value works.
type Options struct {
	// Now is the clock; default time.Now.
	Now func() time.Time
	// KeyPrefix starts every store key; default "rl:".
	KeyPrefix string
	// Timeout bounds each store call; default 30ms. Redis trouble must not
	// stall the gateway.
	Timeout time.Duration
	// Failure is the failure policy of domains not in Domains.
	Failure FailurePolicy
	// Domains holds per-domain failure policies.
	Domains map[string]FailurePolicy
	// LocalCacheSize bounds the local over-limit cache (keys known to be
	// over their limit until their window ends, answered without the
	// store); default 100000; negative disables it.
	LocalCacheSize int
	// Registerer receives the limiter's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Algorithm is the algorithm of domains not in Algorithms; default
	// FixedWindow.
	Algorithm Algorithm
	// Algorithms holds per-domain algorithms.
	Algorithms map[string]Algorithm
}

// Limiter checks requests against the limits a Matcher finds, counting in a
// Store. It is safe for concurrent use and starts no goroutines.
type Limiter struct {
	store   Store
	matcher atomic.Pointer[matcherBox]
	now     func() time.Time
	prefix  string
	timeout time.Duration
	failure FailurePolicy
	domains map[string]FailurePolicy
	cache   *overLimitCache
	m       *metrics
	alg     Algorithm
	algs    map[string]Algorithm
}

type matcherBox struct{ m Matcher }

// New returns a Limiter over store that applies the limits m finds.
func New(store Store, m Matcher, opts Options) *Limiter {
	l := &Limiter{
		store:   store,
		now:     opts.Now,
		prefix:  opts.KeyPrefix,
		timeout: opts.Timeout,
		failure: opts.Failure,
		domains: opts.Domains,
		m:       newMetrics(opts.Registerer),
		alg:     opts.Algorithm,
		algs:    opts.Algorithms,
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.prefix == "" {
		l.prefix = "rl:"
	}
	if l.timeout <= 0 {
		l.timeout = 30 * time.Millisecond
	}
	switch {
	case opts.LocalCacheSize == 0:
		l.cache = newOverLimitCache(100000)
	case opts.LocalCacheSize > 0:
		l.cache = newOverLimitCache(opts.LocalCacheSize)
	}
	l.matcher.Store(&matcherBox{m})
	return l
}

// SetMatcher replaces the limits (on reload). Checks in flight finish with
// the old ones. Counters are kept: a limit that did not change keeps
// counting in the same keys. The local over-limit cache is emptied, since a
// raised limit may let a cached key through again.
func (l *Limiter) SetMatcher(m Matcher) {
	l.matcher.Store(&matcherBox{m})
	if l.cache != nil {
		l.cache.clear()
	}
}

// ErrStore wraps every store failure Check returns.
var ErrStore = errors.New("rate limit store failed")

// Check counts the request's descriptors and decides.
//
// A nil error means the store answered (or was not needed). On a store
// failure Check returns an error wrapping ErrStore together with the Result
// the domain's failure policy dictates, so callers can always act on the
// Result and only log or count the error.
func (l *Limiter) Check(ctx context.Context, req Request) (Result, error) {
	now := l.now()
	sec := now.Unix()
	m := l.matcher.Load().m
	n := len(req.Descriptors)
	res := Result{Statuses: make([]Status, n)}
	var limitsArr [8]*Limit
	limits := limitsArr[:0]
	replaced := false
	for i := range req.Descriptors {
		d := &req.Descriptors[i]
		lm := overrideFor(m, req.Domain, d)
		if len(d.Limits) > 0 {
			lm = nil
		} else if lm == nil && m != nil {
			lm = m.Match(req.Domain, d)
		}
		limits = append(limits, lm)
		if lm != nil && len(lm.Replaces) > 0 {
			replaced = true
		}
	}
	if replaced {
		dropReplaced(limits)
	}

	// ops escapes (the Store is an interface): allocated when the first
	// one is needed, with room for the descriptors left, rather than a
	// fixed array of eight that would be allocated and zeroed every time.
	var ops []Op
	var idxArr [8]int
	idx := idxArr[:0]
	var keyBuf [128]byte
	alg, ok := l.algs[req.Domain]
	if !ok {
		alg = l.alg
	}
	for i, lm := range limits {
		if d := &req.Descriptors[i]; len(d.Limits) > 0 || (alg != FixedWindow && lm != nil) {
			lims := d.Limits
			if len(lims) == 0 {
				lims = limits[i : i+1]
			}
			if op, ok := l.decision(req.Domain, d, lims, alg, now, &res.Statuses[i]); ok {
				if ops == nil {
					ops = make([]Op, 0, n-i)
				}
				ops = append(ops, op)
				idx = append(idx, i)
			}
			continue
		}
		switch {
		case lm == nil:
			continue
		case lm.Unlimited:
			res.Statuses[i] = Status{Code: OK, Limit: lm, Remaining: math.MaxUint32}
			l.m.result("unlimited")
			continue
		case lm.Unit.Seconds() == 0:
			// A limit without a window cannot be counted and applies as
			// none. envoyconfig and rls never produce one (they reject or
			// ignore unknown units), but Matcher and Override are open to
			// any caller, and WindowStart needs a window.
			continue
		}
		d := &req.Descriptors[i]
		ws := WindowStart(sec, lm.Unit)
		end := ws + lm.Unit.Seconds()
		st := &res.Statuses[i]
		st.Limit = lm
		st.ResetAfter = time.Unix(end, 0).Sub(now)
		key := string(AppendKey(keyBuf[:0], l.prefix, req.Domain, d.Entries, lm.SharedValues, lm.Unit, ws))
		if l.cache != nil && l.cache.overLimit(key, lm.Requests, now.UnixNano()) {
			st.LocalCache = true
			l.overLimit(st, lm)
			l.m.localCacheHit()
			continue
		}
		if ops == nil {
			ops = make([]Op, 0, n-i)
		}
		ops = append(ops, Op{Key: key, Hits: min(d.Hits, MaxHits), TTL: lm.Unit.Duration()})
		idx = append(idx, i)
	}

	if len(ops) > 0 {
		if err := ctx.Err(); err != nil {
			return l.fail(req.Domain, err)
		}
		cctx, cancel := context.WithTimeout(ctx, l.timeout)
		start := time.Now()
		err := l.store.Increment(cctx, ops)
		cancel()
		l.m.storeLatency(time.Since(start), err)
		if err != nil {
			return l.fail(req.Domain, err)
		}
		for j := range ops {
			op := &ops[j]
			st := &res.Statuses[idx[j]]
			if len(op.Windows) > 0 {
				l.decided(op, st, now)
				continue
			}
			lm := st.Limit
			if op.Count > uint64(lm.Requests) {
				if l.cache != nil && op.Hits > 0 {
					end := WindowStart(sec, lm.Unit) + lm.Unit.Seconds()
					l.cache.add(op.Key, lm.Requests, end*int64(time.Second))
				}
				l.overLimit(st, lm)
				continue
			}
			st.Remaining = lm.Requests - uint32(op.Count)
			l.m.result("ok")
		}
	}
	for i := range res.Statuses {
		if res.Statuses[i].Code == OverLimit {
			res.Code = OverLimit
		}
	}
	l.m.check(l.domainLabel(req.Domain), res.Code.String())
	return res, nil
}

// domainLabel is the metric label for a domain: itself when the loaded rules
// define it, "other" otherwise, so a caller of ShouldRateLimit cannot grow
// the series without bound.
func (l *Limiter) domainLabel(domain string) string {
	if hd, ok := l.matcher.Load().m.(interface{ HasDomain(string) bool }); ok && hd.HasDomain(domain) {
		return domain
	}
	return "other"
}

func (l *Limiter) overLimit(st *Status, lm *Limit) {
	if lm.Shadow {
		st.ShadowOverLimit = true
		l.m.result("shadow_over_limit")
		return
	}
	st.Code = OverLimit
	l.m.result("over_limit")
}

// dropReplaced removes limits named in another applying limit's Replaces,
// as envoyproxy/ratelimit does.
func dropReplaced(limits []*Limit) {
	var names []string
	for _, lm := range limits {
		if lm != nil {
			names = append(names, lm.Replaces...)
		}
	}
	for i, lm := range limits {
		if lm == nil || lm.Name == "" {
			continue
		}
		for _, n := range names {
			if n == lm.Name {
				limits[i] = nil
				break
			}
		}
	}
}

func (l *Limiter) fail(domain string, err error) (Result, error) {
	p, ok := l.domains[domain]
	if !ok {
		p = l.failure
	}
	res := Result{Failed: true}
	switch {
	case p.Mode == FailOpen:
		res.Code = OK
		res.FailedOpen = true
		l.m.check(l.domainLabel(domain), "failed_open")
	case p.DenyStatus == 429:
		res.Code = OverLimit
		l.m.check(l.domainLabel(domain), "failed_closed")
	default:
		res.Code = Unavailable
		l.m.check(l.domainLabel(domain), "failed_closed")
	}
	return res, fmt.Errorf("%w: domain %s: %w", ErrStore, domain, err)
}

// decision builds the decision Op of a descriptor whose limits (one or
// several windows) are decided by the store, and fills st with what is
// known before the store answers. It returns false when nothing needs the
// store: no countable limit, an unlimited one, or a window the local cache
// knows is over.
func (l *Limiter) decision(domain string, d *Descriptor, lims []*Limit, alg Algorithm, now time.Time, st *Status) (Op, bool) {
	sec := now.Unix()
	var counted int
	for _, lm := range lims {
		switch {
		case lm == nil:
		case lm.Unlimited:
			*st = Status{Code: OK, Limit: lm, Remaining: math.MaxUint32}
			l.m.result("unlimited")
			return Op{}, false
		case lm.Unit.Seconds() == 0:
		default:
			counted++
		}
	}
	if counted == 0 {
		return Op{}, false
	}
	op := Op{Hits: min(d.Hits, MaxHits), Algorithm: alg, Windows: make([]Window, 0, counted)}
	st.Windows = make([]WindowStatus, 0, counted)
	var keyBuf [160]byte
	for _, lm := range lims {
		if lm == nil || lm.Unit.Seconds() == 0 {
			continue
		}
		var ws int64
		if alg == FixedWindow {
			ws = WindowStart(sec, lm.Unit)
		}
		key := string(AppendWindowKey(keyBuf[:0], l.prefix, domain, d.Entries, lm.SharedValues, alg, lm.Unit, ws))
		if l.cache != nil && !lm.Shadow && d.Hits > 0 && l.cache.overLimit(key, lm.Requests, now.UnixNano()) {
			// A window over for one hit is over for more, and the
			// others cannot change that: deny without the store.
			*st = Status{Code: OverLimit, Limit: lm, LocalCache: true, ResetAfter: cacheLeft(alg, lm, now)}
			l.m.localCacheHit()
			l.m.result("over_limit")
			return Op{}, false
		}
		op.Windows = append(op.Windows, Window{Key: key, Limit: uint64(lm.Requests), Period: lm.Unit.Duration(), Shadow: lm.Shadow})
		st.Windows = append(st.Windows, WindowStatus{Limit: lm})
	}
	return op, true
}

// cacheLeft is how long a cached over-limit window stays over, for the
// headers: its fixed window's end; for the smooth algorithms the cache
// does not keep it, and 1s (the shortest unit) is a safe hint.
func cacheLeft(alg Algorithm, lm *Limit, now time.Time) time.Duration {
	if alg == FixedWindow {
		end := WindowStart(now.Unix(), lm.Unit) + lm.Unit.Seconds()
		return time.Unix(end, 0).Sub(now)
	}
	return time.Second
}

// decided turns a decision Op's verdicts into st.
func (l *Limiter) decided(op *Op, st *Status, now time.Time) {
	deny, best := -1, -1
	for j := range op.Windows {
		w := &op.Windows[j]
		ws := &st.Windows[j]
		ws.Over = w.Verdict.Over
		ws.Remaining = uint32(min(w.Verdict.Remaining, math.MaxUint32))
		ws.ResetAfter = w.Verdict.ResetAfter
		if op.Algorithm == FixedWindow {
			lm := ws.Limit
			end := WindowStart(now.Unix(), lm.Unit) + lm.Unit.Seconds()
			ws.ResetAfter = time.Unix(end, 0).Sub(now)
		}
		switch {
		case ws.Over && w.Shadow:
			st.ShadowOverLimit = true
		case ws.Over && deny < 0:
			deny = j
		}
		if best < 0 || ws.Remaining < st.Windows[best].Remaining {
			best = j
		}
	}
	pick := best
	if op.Denied && deny >= 0 {
		pick = deny
		st.Code = OverLimit
		if l.cache != nil && op.Hits == 1 {
			w := &op.Windows[deny]
			l.cache.add(w.Key, uint32(w.Limit), now.Add(st.Windows[deny].ResetAfter).UnixNano())
		}
		l.m.result("over_limit")
	} else if st.ShadowOverLimit {
		l.m.result("shadow_over_limit")
	} else {
		l.m.result("ok")
	}
	ws := st.Windows[pick]
	st.Limit, st.Remaining, st.ResetAfter = ws.Limit, ws.Remaining, ws.ResetAfter
}
