package revocation

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a List; the zero value works.
type Options struct {
	// MaxStaleness is how long the List trusts its memory after the last
	// successful read of the log; past it every Check asks the store.
	// Default 5s.
	MaxStaleness time.Duration
	// MaxRecords bounds the records held in memory (credential records
	// and subject epochs together). Past it the List stops trusting its
	// memory (Checks ask the store) until a resync fits. Default 1000000.
	MaxRecords int
	// Retention is how long a subject epoch matters: at least the longest
	// lifetime of any credential it must revoke. Older epochs are dropped.
	// Default 720h (30 days).
	Retention time.Duration
	// LookupTimeout bounds one direct lookup; default 100ms.
	LookupTimeout time.Duration
	// Block is how long one read of the log waits for news; default
	// MaxStaleness/4, at most 1s.
	Block time.Duration
	// SweepInterval is how often expired records are dropped; default 10s.
	SweepInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger gets operational messages; nil discards them.
	Logger *slog.Logger
	// Registerer gets the metrics of metrics.go; nil: none.
	Registerer prometheus.Registerer
}

// Defaults of Options.
const (
	DefaultMaxStaleness  = 5 * time.Second
	DefaultMaxRecords    = 1_000_000
	DefaultRetention     = 720 * time.Hour
	DefaultLookupTimeout = 100 * time.Millisecond
	// ExpiryGrace keeps a credential record this long past the
	// credential's exp, so a verifier's clock-skew leeway cannot outlive
	// the record.
	ExpiryGrace = 5 * time.Minute
)

func (o *Options) applyDefaults() {
	if o.MaxStaleness <= 0 {
		o.MaxStaleness = DefaultMaxStaleness
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = DefaultMaxRecords
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = DefaultLookupTimeout
	}
	if o.Block <= 0 {
		o.Block = min(o.MaxStaleness/4, time.Second)
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

const shards = 32

type credShard struct {
	mu sync.RWMutex
	m  map[string]int64 // id → expiry (0: never)
}

type subjectEpochs struct {
	all  int64
	apps map[string]int64
}

type subjShard struct {
	mu sync.RWMutex
	m  map[string]*subjectEpochs
}

// List is the in-memory revocation state: bounded, sharded maps read
// under a shard's read lock, kept current by Run. Its methods are safe
// for concurrent use. Build it with New.
type List struct {
	src      Source
	opts     Options
	seed     maphash.Seed
	creds    [numCredKinds][shards]credShard
	subjects [shards]subjShard
	counts   [numKinds]atomic.Int64
	total    atomic.Int64
	dropped  atomic.Int64
	overflow atomic.Bool
	// synced is when (Unix nanoseconds, Options.Now) the last read that
	// brought the memory up to date with the store was started; 0: never.
	synced  atomic.Int64
	lastErr atomic.Pointer[string]
	m       *metrics
}

// New returns an empty List over src. It starts no goroutine: Run reads
// the store. Until Run's first snapshot every Check asks src directly.
func New(src Source, opts Options) *List {
	opts.applyDefaults()
	l := &List{src: src, opts: opts, seed: maphash.MakeSeed(), m: newMetrics(opts.Registerer)}
	for k := range l.creds {
		for i := range l.creds[k] {
			l.creds[k][i].m = make(map[string]int64)
		}
	}
	for i := range l.subjects {
		l.subjects[i].m = make(map[string]*subjectEpochs)
	}
	l.m.setMax(opts.MaxRecords)
	return l
}

// Options returns the List's options (after defaults).
func (l *List) Options() Options { return l.opts }

func (l *List) shard(id string) int { return int(maphash.String(l.seed, id) % shards) }

// Check answers whether the credential q describes is revoked. It reads
// only memory while the memory is trusted (see Options.MaxStaleness and
// MaxRecords), or when memory revokes it; otherwise it asks the store
// once, and an error then means the Check could not be decided (never a
// verdict).
func (l *List) Check(ctx context.Context, now time.Time, q *Query) (Verdict, error) {
	// Memory only ever misses revocations (it drops a record only once
	// it expired), so what it revokes is revoked even when it is stale,
	// and even when the store has since lost the record.
	v := l.local(now, q)
	if v.Revoked {
		l.m.decision("memory", "revoked")
		return v, nil
	}
	if l.trusted(now) {
		return v, nil
	}
	return l.lookup(ctx, now, q)
}

// trusted reports whether the memory may answer at now.
func (l *List) trusted(now time.Time) bool {
	s := l.synced.Load()
	return s != 0 && now.UnixNano()-s <= int64(l.opts.MaxStaleness) && !l.overflow.Load()
}

// Local answers q from memory alone, however stale it is (for tests and
// `token status`).
func (l *List) Local(now time.Time, q *Query) Verdict { return l.local(now, q) }

func (l *List) local(now time.Time, q *Query) Verdict {
	for k := range numCredKinds {
		id := q.IDs[k]
		if id == "" || l.counts[k].Load() == 0 {
			continue
		}
		sh := &l.creds[k][l.shard(id)]
		sh.mu.RLock()
		_, ok := sh.m[id]
		sh.mu.RUnlock()
		if ok {
			return Verdict{Revoked: true, By: Kind(k).String()}
		}
	}
	if q.NoEpoch || q.Subject == "" || l.counts[KindSubject].Load() == 0 {
		return Verdict{}
	}
	sh := &l.subjects[l.shard(q.Subject)]
	sh.mu.RLock()
	var epoch int64
	if e := sh.m[q.Subject]; e != nil {
		epoch = e.all
		if q.App != "" {
			epoch = max(epoch, e.apps[q.App])
		}
	}
	sh.mu.RUnlock()
	return epochVerdict(epoch, now, l.opts.Retention, q)
}

// epochVerdict applies a subject epoch to q.
func epochVerdict(epoch int64, now time.Time, retention time.Duration, q *Query) Verdict {
	if epoch == 0 || epoch < now.Add(-retention).Unix() {
		return Verdict{}
	}
	if !q.HasIssuedAt || q.IssuedAt < epoch {
		return Verdict{Revoked: true, By: "subject epoch " + time.Unix(epoch, 0).UTC().Format(time.RFC3339)}
	}
	return Verdict{}
}

func (l *List) lookup(ctx context.Context, now time.Time, q *Query) (Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.LookupTimeout)
	defer cancel()
	// A copy goes to the Source (an interface: what it is given escapes),
	// so the caller's query stays on its stack on the memory path.
	qc := *q
	f, err := l.src.Lookup(ctx, &qc)
	var v Verdict
	switch {
	case err != nil:
	case f.Cred:
		v = Verdict{Revoked: true, By: f.Kind.String()}
	case !q.NoEpoch:
		v = epochVerdict(f.Epoch, now, l.opts.Retention, q)
	}
	switch {
	case err != nil:
		l.m.decision("lookup", "error")
		return Verdict{}, fmt.Errorf("revocation lookup: %w", err)
	case v.Revoked:
		l.m.decision("lookup", "revoked")
	default:
		l.m.decision("lookup", "accepted")
	}
	return v, nil
}

// Apply adds r to memory (the latest expiry and the latest epoch win). A
// record past the bound is dropped and the List stops trusting its memory
// until a resync fits. Invalid records are dropped and counted.
func (l *List) Apply(r Record) {
	if r.Validate() != nil {
		l.m.invalid()
		return
	}
	if l.expired(&r, l.opts.Now()) {
		return // nothing left to revoke
	}
	if r.Kind == KindSubject {
		l.applySubject(r)
		return
	}
	sh := &l.creds[r.Kind][l.shard(r.ID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if cur, ok := sh.m[r.ID]; ok {
		if cur != 0 && (r.At == 0 || r.At > cur) {
			sh.m[r.ID] = r.At
		}
		return
	}
	if !l.reserve() {
		return
	}
	sh.m[r.ID] = r.At
	l.counts[r.Kind].Add(1)
}

func (l *List) applySubject(r Record) {
	sh := &l.subjects[l.shard(r.ID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// A subject's records are its epoch for every app and one per app.
	e := sh.m[r.ID]
	var fresh bool
	switch {
	case e == nil:
		fresh = true
	case r.App == "":
		fresh = e.all == 0
	default:
		_, ok := e.apps[r.App]
		fresh = !ok
	}
	if fresh {
		if !l.reserve() {
			return
		}
		l.counts[KindSubject].Add(1)
	}
	if e == nil {
		e = &subjectEpochs{}
		sh.m[r.ID] = e
	}
	if r.App == "" {
		e.all = max(e.all, r.At)
		return
	}
	if e.apps == nil {
		e.apps = make(map[string]int64, 1)
	}
	e.apps[r.App] = max(e.apps[r.App], r.At)
}

// expired reports whether r no longer matters at now (see Sweep).
func (l *List) expired(r *Record, now time.Time) bool {
	if r.Kind == KindSubject {
		return r.At < now.Add(-l.opts.Retention).Unix()
	}
	return r.At != 0 && r.At < now.Add(-ExpiryGrace).Unix()
}

// reserve counts one more record, or drops it at the bound.
func (l *List) reserve() bool {
	if l.total.Add(1) > int64(l.opts.MaxRecords) {
		l.total.Add(-1)
		l.dropped.Add(1)
		if !l.overflow.Swap(true) {
			l.opts.Logger.Warn("revocation records over max_records: Checks ask the store until a resync fits", "max_records", l.opts.MaxRecords)
		}
		l.m.drop()
		return false
	}
	return true
}

// Sweep drops credential records past their expiry (plus ExpiryGrace) and
// subject epochs older than the retention.
func (l *List) Sweep(now time.Time) {
	credCut := now.Add(-ExpiryGrace).Unix()
	for k := range l.creds {
		for i := range l.creds[k] {
			sh := &l.creds[k][i]
			sh.mu.Lock()
			for id, until := range sh.m {
				if until != 0 && until < credCut {
					delete(sh.m, id)
					l.counts[k].Add(-1)
					l.total.Add(-1)
				}
			}
			sh.mu.Unlock()
		}
	}
	epochCut := now.Add(-l.opts.Retention).Unix()
	for i := range l.subjects {
		sh := &l.subjects[i]
		sh.mu.Lock()
		for s, e := range sh.m {
			n := 0
			for app, at := range e.apps {
				if at < epochCut {
					delete(e.apps, app)
					n++
				}
			}
			if e.all != 0 && e.all < epochCut {
				e.all = 0
				n++
			}
			if e.all == 0 && len(e.apps) == 0 {
				delete(sh.m, s)
			}
			l.counts[KindSubject].Add(-int64(n))
			l.total.Add(-int64(n))
		}
		sh.mu.Unlock()
	}
	l.publishCounts()
}

func (l *List) publishCounts() {
	for k := range numKinds {
		l.m.setRecords(k, l.counts[k].Load())
	}
	l.m.setOverflow(l.overflow.Load())
}

// Len is the number of records held.
func (l *List) Len() int { return int(l.total.Load()) }

// Ready returns nil once the List has loaded the store's records.
func (l *List) Ready() error {
	if l.synced.Load() != 0 {
		return nil
	}
	if p := l.lastErr.Load(); p != nil {
		return fmt.Errorf("revocation: records not loaded yet: %s", *p)
	}
	return errors.New("revocation: records not loaded yet")
}

// Degraded describes why Checks cannot be answered from memory alone
// (each then costs a store round trip, or 503 when the store is down),
// or returns "".
func (l *List) Degraded() string {
	now := l.opts.Now()
	var why string
	switch s := l.synced.Load(); {
	case l.overflow.Load():
		why = fmt.Sprintf("revocation: more records than max_records (%d)", l.opts.MaxRecords)
	case s == 0:
		why = "revocation: records not loaded yet"
	case now.UnixNano()-s > int64(l.opts.MaxStaleness):
		why = fmt.Sprintf("revocation: log last read %s ago (max_staleness %s)", time.Duration(now.UnixNano()-s).Round(time.Millisecond), l.opts.MaxStaleness)
	default:
		return ""
	}
	if p := l.lastErr.Load(); p != nil {
		why += ": " + *p
	}
	return why + "; each Check asks the store"
}
