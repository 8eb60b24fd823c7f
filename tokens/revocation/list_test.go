package revocation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// synced marks l up to date at now without a Run.
func synced(l *List, now time.Time) { l.markSynced(now) }

func q(subject, app string, iat int64, ids ...string) *Query {
	out := &Query{Subject: subject, App: app, IssuedAt: iat, HasIssuedAt: iat != 0}
	for i := 0; i+1 < len(ids); i += 2 {
		k, _ := ParseKind(ids[i])
		out.IDs[k] = ids[i+1]
	}
	return out
}

func TestCheckFromMemory(t *testing.T) {
	l := New(NewMemory(0), Options{Now: func() time.Time { return t0 }})
	exp := t0.Add(time.Hour).Unix()
	digest := strings.Repeat("d", 32)
	for _, r := range []Record{
		{Kind: KindJTI, ID: "j-1", At: exp},
		{Kind: KindSID, ID: "s-1", At: exp},
		{Kind: KindTicket, ID: "t-1", At: exp},
		{Kind: KindSession, ID: digest, At: exp},
		{Kind: KindAPIKey, ID: digest}, // never expires
		{Kind: KindSubject, ID: "alice", At: t0.Unix() - 10},
		{Kind: KindSubject, ID: "bob", App: "shop", At: t0.Unix() - 10},
		{Kind: KindSubject, ID: "bob", At: t0.Unix() - 1000},
		{Kind: KindSubject, ID: "eve", At: t0.Add(-DefaultRetention - time.Hour).Unix()}, // past retention
		{Kind: KindJTI, ID: "gone", At: t0.Add(-ExpiryGrace - time.Second).Unix()},       // long expired
	} {
		l.Apply(r)
	}
	if l.Len() != 8 {
		t.Errorf("%d records held, want 8 (none past its time)", l.Len())
	}
	synced(l, t0)
	tests := []struct {
		name string
		give *Query
		want string // By, "" when accepted
	}{
		{"jti", q("x", "", 1, "jti", "j-1"), "jti"},
		{"other jti", q("x", "", 1, "jti", "j-2"), ""},
		{"sid beside a fresh jti", q("x", "", 1, "jti", "j-2", "sid", "s-1"), "sid"},
		{"ticket", q("x", "", 1, "ticket", "t-1"), "ticket"},
		{"jti id is not a ticket id", q("x", "", 1, "ticket", "j-1"), ""},
		{"session digest", q("x", "", 1, "session", digest), "session"},
		{"api key digest", q("x", "", 1, "api-key", digest), "api-key"},
		{"issued before the epoch", q("alice", "", t0.Unix()-11, "jti", "j-9"), "subject epoch 2026-11-21T11:59:50Z"},
		{"issued at the epoch", q("alice", "", t0.Unix()-10), ""},
		{"no iat under an epoch", q("alice", "", 0), "subject epoch 2026-11-21T11:59:50Z"},
		{"per-app epoch, its app", q("bob", "shop", t0.Unix()-11), "subject epoch 2026-11-21T11:59:50Z"},
		{"per-app epoch, other app: the all-apps epoch", q("bob", "blog", t0.Unix()-11), ""},
		{"all-apps epoch of bob", q("bob", "blog", t0.Unix()-1001), "subject epoch 2026-11-21T11:43:20Z"},
		{"epoch past the retention", q("eve", "", 1), ""},
		{"unknown subject", q("carol", "", 1), ""},
	}
	for _, tt := range tests {
		v, err := l.Check(context.Background(), t0, tt.give)
		if err != nil || v.Revoked != (tt.want != "") || v.By != tt.want {
			t.Errorf("%s: %+v, %v; want %q", tt.name, v, err, tt.want)
		}
	}
	noEpoch := q("alice", "", 0)
	noEpoch.NoEpoch = true
	if v, _ := l.Check(context.Background(), t0, noEpoch); v.Revoked {
		t.Error("NoEpoch query revoked by a subject epoch")
	}
	// A later write with an earlier epoch or expiry does not move it back.
	l.Apply(Record{Kind: KindSubject, ID: "alice", At: 1})
	if v := l.Local(t0, q("alice", "", t0.Unix()-11)); !v.Revoked {
		t.Error("an older epoch replaced a newer one")
	}
}

func TestRecordValidate(t *testing.T) {
	tests := []struct {
		give Record
		want string
	}{
		{Record{Kind: KindJTI, ID: "j", At: 1}, ""},
		{Record{Kind: 99, ID: "j"}, "unknown record kind"},
		{Record{Kind: KindJTI}, "without an id"},
		{Record{Kind: KindSession, ID: "short"}, "SHA-256"},
		{Record{Kind: KindJTI, ID: "j", App: "a"}, "with an app"},
		{Record{Kind: KindSubject, ID: "s"}, "without an epoch"},
		{Record{Kind: KindJTI, ID: "j", At: -1}, "negative"},
		{Record{Kind: KindJTI, ID: strings.Repeat("j", MaxIDBytes+1)}, "longer than"},
	}
	for _, tt := range tests {
		err := tt.give.Validate()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.give, err, tt.want)
		}
	}
	l := New(NewMemory(0), Options{})
	l.Apply(Record{Kind: KindJTI})
	if l.Len() != 0 {
		t.Error("an invalid record was held")
	}
}

func TestBoundAndSweep(t *testing.T) {
	clk := &clock{t: t0}
	reg := prometheus.NewRegistry()
	l := New(NewMemory(0), Options{Now: clk.Now, MaxRecords: 3, Registerer: reg})
	synced(l, t0)
	for i := range 3 {
		l.Apply(Record{Kind: KindJTI, ID: fmt.Sprint("j", i), At: t0.Add(time.Minute).Unix()})
	}
	if !l.trusted(t0) {
		t.Fatal("not trusted at the bound")
	}
	l.Apply(Record{Kind: KindSubject, ID: "s", At: t0.Unix()})
	if l.Len() != 3 || l.trusted(t0) || !strings.Contains(l.Degraded(), "max_records") {
		t.Fatalf("over the bound: %d records, trusted %v, degraded %q", l.Len(), l.trusted(t0), l.Degraded())
	}
	if got := testutil.ToFloat64(l.m.dropped.WithLabelValues("over_max_records")); got != 1 {
		t.Errorf("dropped metric %v", got)
	}
	// Past expiry plus grace the records go.
	clk.Advance(time.Minute + ExpiryGrace + time.Second)
	l.Sweep(clk.Now())
	if l.Len() != 0 {
		t.Errorf("after sweep: %d records", l.Len())
	}
	if got := testutil.ToFloat64(l.m.records.WithLabelValues("jti")); got != 0 {
		t.Errorf("records metric %v after sweep", got)
	}
	// Subject epochs go after the retention, app epochs too.
	l.Apply(Record{Kind: KindSubject, ID: "s", At: clk.Now().Unix()})
	l.Apply(Record{Kind: KindSubject, ID: "s", App: "a", At: clk.Now().Unix()})
	if l.Len() != 2 {
		t.Fatalf("%d records, want 2", l.Len())
	}
	clk.Advance(DefaultRetention + time.Second)
	l.Sweep(clk.Now())
	if l.Len() != 0 {
		t.Errorf("epochs past retention: %d records", l.Len())
	}
}

// TestRunResyncsAfterOverflow: records dropped at the bound come back by
// a snapshot once there is room, and only then is memory trusted again.
func TestRunResyncsAfterOverflow(t *testing.T) {
	clk := &clock{t: t0}
	src := NewMemory(0)
	l := New(src, Options{Now: clk.Now, MaxRecords: 2, SweepInterval: time.Nanosecond, Block: 5 * time.Millisecond})
	run(t, l)
	waitUntil(t, func() bool { return l.Ready() == nil })
	soon := t0.Add(time.Second).Unix()
	for _, id := range []string{"a", "b", "c"} {
		if err := src.Revoke(Record{Kind: KindJTI, ID: id, At: soon}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, func() bool { return l.overflow.Load() })
	// a and b expire; c (dropped) must come back from a snapshot.
	if err := src.Revoke(Record{Kind: KindJTI, ID: "d", At: t0.Add(time.Hour).Unix()}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(ExpiryGrace + 2*time.Second)
	waitUntil(t, func() bool { return !l.overflow.Load() })
	if v := l.Local(clk.Now(), q("", "", 0, "jti", "d")); !v.Revoked {
		t.Error("d not held after the resync")
	}
}

func TestRunGapResyncs(t *testing.T) {
	src := NewMemory(2)
	l := New(src, Options{Block: 5 * time.Millisecond})
	// Trimmed before Run starts reading: the snapshot has them.
	for i := range 5 {
		_ = src.Revoke(Record{Kind: KindJTI, ID: fmt.Sprint("j", i), At: 0})
	}
	run(t, l)
	waitUntil(t, func() bool { return l.Len() == 5 })
	// A burst larger than the log while Run reads: the gap reloads.
	src.mu.Lock()
	for i := 5; i < 50; i++ {
		src.records = append(src.records, Record{Kind: KindJTI, ID: fmt.Sprint("j", i)})
		src.log = append(src.log, Record{Kind: KindJTI, ID: fmt.Sprint("j", i)})
	}
	src.base += len(src.log) - 2
	src.log = src.log[len(src.log)-2:]
	close(src.wake)
	src.wake = make(chan struct{})
	src.mu.Unlock()
	waitUntil(t, func() bool { return l.Len() == 50 })
}

// TestStaleAsksTheStore: past max_staleness a Check asks the store; when
// the store fails, it could not be decided.
func TestStaleAsksTheStore(t *testing.T) {
	clk := &clock{t: t0}
	src := NewMemory(0)
	reg := prometheus.NewRegistry()
	l := New(src, Options{Now: clk.Now, MaxStaleness: time.Second, Registerer: reg})
	synced(l, t0)
	_ = src.Revoke(Record{Kind: KindJTI, ID: "j", At: 0}) // not applied: no Run
	if v, _ := l.Check(context.Background(), t0, q("", "", 0, "jti", "j")); v.Revoked {
		t.Fatal("fresh memory answered from the store")
	}
	clk.Advance(2 * time.Second)
	if l.Degraded() == "" {
		t.Error("not degraded past max_staleness")
	}
	if v, err := l.Check(context.Background(), clk.Now(), q("", "", 0, "jti", "j")); err != nil || !v.Revoked {
		t.Errorf("stale: %+v, %v; want revoked by lookup", v, err)
	}
	src.Fail(errors.New("down"))
	if _, err := l.Check(context.Background(), clk.Now(), q("", "", 0, "jti", "j")); err == nil {
		t.Error("stale with the store down: decided")
	}
	if got := testutil.ToFloat64(l.m.decisions.WithLabelValues("lookup", "error")); got != 1 {
		t.Errorf("lookup errors counted %v", got)
	}
}

func TestCompareIDs(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1-0", "1-0", 0}, {"1-1", "1-0", 1}, {"2-0", "10-0", -1}, {"0-0", "1795000000000-3", -1},
	}
	for _, tt := range tests {
		if got := CompareIDs(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareIDs(%s, %s) = %d", tt.a, tt.b, got)
		}
	}
	if CompareIDs("x-y", "0-0") != 0 {
		t.Error("malformed ids do not compare as 0-0")
	}
}

func run(t *testing.T, l *List) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = l.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// FuzzCompareIDs: the order of stream ids is antisymmetric, and agrees
// with the numbers for well-formed ones.
func FuzzCompareIDs(f *testing.F) {
	f.Add("1-0", "1-1")
	f.Add("1795000000000-3", "0-0")
	f.Add("x-y", "18446744073709551615-0")
	f.Add("", "-")
	f.Fuzz(func(t *testing.T, a, b string) {
		if CompareIDs(a, b) != -CompareIDs(b, a) {
			t.Fatalf("CompareIDs(%q, %q) = %d, reversed %d", a, b, CompareIDs(a, b), CompareIDs(b, a))
		}
		if CompareIDs(a, a) != 0 {
			t.Fatalf("CompareIDs(%q, itself) != 0", a)
		}
	})
}
