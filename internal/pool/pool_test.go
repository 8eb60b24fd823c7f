package pool

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// component records what the pool did to it.
type component struct {
	name    string
	runs    atomic.Int32
	running atomic.Bool
	closed  atomic.Int32
	runErr  error
}

func (c *component) Run(ctx context.Context) error {
	c.runs.Add(1)
	c.running.Store(true)
	defer c.running.Store(false)
	if c.runErr != nil {
		return c.runErr
	}
	<-ctx.Done()
	return nil
}

func (c *component) Close() error {
	c.closed.Add(1)
	if c.running.Load() {
		return errors.New("closed while running")
	}
	return nil
}

// plain has neither Run nor Close.
type plain struct{}

func TestSharedUntilLastRelease(t *testing.T) {
	p := New(Options{})
	builds := 0
	build := func() (any, error) { builds++; return &component{name: "a"}, nil }

	g1 := p.NewLease()
	v1, loaded, err := g1.Acquire("jwt/a", build)
	if err != nil || loaded {
		t.Fatalf("first acquire: loaded=%v err=%v", loaded, err)
	}
	if err := g1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := v1.(*component)
	waitRunning(t, c)

	g2 := p.NewLease()
	v2, loaded, err := g2.Acquire("jwt/a", build)
	if err != nil || !loaded || v2 != v1 {
		t.Fatalf("second acquire: same=%v loaded=%v err=%v", v2 == v1, loaded, err)
	}
	if err := g2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p.Refs("jwt/a"); got != 2 {
		t.Fatalf("refs = %d, want 2", got)
	}
	if err := g1.Release(); err != nil {
		t.Fatal(err)
	}
	if !c.running.Load() || c.closed.Load() != 0 || c.runs.Load() != 1 {
		t.Fatalf("after the old generation's release: running=%v closed=%d runs=%d, want running, open, run once",
			c.running.Load(), c.closed.Load(), c.runs.Load())
	}
	if err := g2.Release(); err != nil {
		t.Fatal(err)
	}
	if c.running.Load() || c.closed.Load() != 1 {
		t.Fatalf("after the last release: running=%v closed=%d", c.running.Load(), c.closed.Load())
	}
	if builds != 1 {
		t.Errorf("built %d times, want 1", builds)
	}
	if len(p.Keys()) != 0 {
		t.Errorf("keys left: %v", p.Keys())
	}
}

func TestChangedKeyStartsFresh(t *testing.T) {
	p := New(Options{})
	g1, g2 := p.NewLease(), p.NewLease()
	old := &component{}
	if _, _, err := g1.Acquire("session/cfg-1", func() (any, error) { return old, nil }); err != nil {
		t.Fatal(err)
	}
	_ = g1.Start(context.Background())
	fresh := &component{}
	v, loaded, err := g2.Acquire("session/cfg-2", func() (any, error) { return fresh, nil })
	if err != nil || loaded || v != fresh {
		t.Fatalf("changed config reused the old component: loaded=%v err=%v", loaded, err)
	}
	_ = g2.Start(context.Background())
	waitRunning(t, fresh)
	if err := g1.Release(); err != nil {
		t.Fatal(err)
	}
	if old.closed.Load() != 1 || old.running.Load() {
		t.Errorf("old component not stopped with its last generation")
	}
	if fresh.closed.Load() != 0 || !fresh.running.Load() {
		t.Errorf("fresh component stopped with the old generation")
	}
	_ = g2.Release()
}

func TestFailedBuildHoldsNothing(t *testing.T) {
	p := New(Options{})
	l := p.NewLease()
	a := &component{}
	if _, _, err := l.Acquire("a", func() (any, error) { return a, nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("bad key file")
	if _, _, err := l.Acquire("b", func() (any, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the build's", err)
	}
	if p.Refs("b") != 0 {
		t.Error("a failed build left an entry")
	}
	// The build that failed part-way releases what it took, as a
	// generation does.
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if a.closed.Load() != 1 || len(p.Keys()) != 0 {
		t.Errorf("after cleanup: closed=%d keys=%v", a.closed.Load(), p.Keys())
	}
	if err := l.Release(); err != nil {
		t.Errorf("second release of a lease: %v", err)
	}
}

func TestReleaseOrderNewestFirst(t *testing.T) {
	p := New(Options{})
	var order []string
	l := p.NewLease()
	for _, k := range []string{"redis", "session"} {
		if _, _, err := l.Acquire(k, func() (any, error) { return closerFunc(func() error { order = append(order, k); return nil }), nil }); err != nil {
			t.Fatal(err)
		}
	}
	_ = l.Release()
	if len(order) != 2 || order[0] != "session" || order[1] != "redis" {
		t.Errorf("close order = %v, want [session redis]: a dependent goes before what it uses", order)
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func TestRunErrorReported(t *testing.T) {
	got := make(chan string, 1)
	p := New(Options{OnRunError: func(key string, err error) { got <- key + ": " + err.Error() }})
	l := p.NewLease()
	_, _, _ = l.Acquire("k", func() (any, error) { return &component{runErr: errors.New("gave up")}, nil })
	_ = l.Start(context.Background())
	if s := <-got; s != "k: gave up" {
		t.Errorf("reported %q", s)
	}
	_ = l.Release()
}

func TestNotHeld(t *testing.T) {
	p := New(Options{})
	if err := p.Release("nope"); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Release of an unknown key: %v, want ErrNotHeld", err)
	}
	if err := p.Start(context.Background(), "nope"); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Start of an unknown key: %v, want ErrNotHeld", err)
	}
	l := p.NewLease()
	_, _, _ = l.Acquire("p", func() (any, error) { return plain{}, nil })
	if err := l.Start(context.Background()); err != nil {
		t.Errorf("Start of a value without Run: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("Release of a value without Close: %v", err)
	}
}

func waitRunning(t *testing.T, c *component) {
	t.Helper()
	for range 1000 {
		if c.running.Load() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("component never ran")
}
