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
		if lm == nil && m != nil {
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

	var opsArr [8]Op
	var idxArr [8]int
	ops, idx := opsArr[:0], idxArr[:0]
	var keyBuf [128]byte
	for i, lm := range limits {
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
		if l.cache != nil && l.cache.overLimit(key, sec) {
			st.LocalCache = true
			l.overLimit(st, lm)
			l.m.localCacheHit()
			continue
		}
		ops = append(ops, Op{Key: key, Hits: d.Hits, TTL: lm.Unit.Duration()})
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
			lm := st.Limit
			if op.Count > uint64(lm.Requests) {
				if l.cache != nil && op.Hits > 0 {
					l.cache.add(op.Key, WindowStart(sec, lm.Unit)+lm.Unit.Seconds())
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
