package pool

import (
	"context"
	"errors"
	"sort"
	"sync"
)

// Runner is a pooled value with background work.
type Runner interface {
	Run(ctx context.Context) error
}

// Closer is a pooled value with resources to free when its last user goes.
type Closer interface {
	Close() error
}

// Options configure a Pool; the zero value works.
type Options struct {
	// OnRunError is told when a component's Run returns an error before it
	// was stopped. Nil: such errors are dropped.
	OnRunError func(key string, err error)
}

// Pool is a reference-counted map of running components. The zero value
// is not usable: call New.
type Pool struct {
	opts Options
	mu   sync.Mutex
	m    map[string]*entry
}

type entry struct {
	refs   int
	val    any
	cancel context.CancelFunc // set once started
	done   chan struct{}
}

// New returns an empty pool. It starts nothing.
func New(opts Options) *Pool {
	return &Pool{opts: opts, m: make(map[string]*entry)}
}

// ErrNotHeld is returned by Release and Start for a key nobody holds. It
// does not name the key: keys are made of configuration, which may hold
// passwords.
var ErrNotHeld = errors.New("pool: key not held")

// Acquire returns the value under key and adds one reference to it. When
// there is none, it builds one with build; loaded reports whether an
// existing value was reused. A failed build stores nothing and holds no
// reference. build runs with the pool locked: it must not call the pool.
func (p *Pool) Acquire(key string, build func() (any, error)) (val any, loaded bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[key]; ok {
		e.refs++
		return e.val, true, nil
	}
	v, err := build()
	if err != nil {
		return nil, false, err
	}
	p.m[key] = &entry{refs: 1, val: v}
	return v, false, nil
}

// Start runs the background work of the value under key, if it is a Runner
// and not running yet, under a context derived from ctx. Starting a
// running value again does nothing.
func (p *Pool) Start(ctx context.Context, key string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[key]
	if !ok {
		return ErrNotHeld
	}
	r, ok := e.val.(Runner)
	if !ok || e.cancel != nil {
		return nil
	}
	rctx, cancel := context.WithCancel(ctx)
	e.cancel, e.done = cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		if err := r.Run(rctx); err != nil && rctx.Err() == nil && p.opts.OnRunError != nil {
			p.opts.OnRunError(key, err)
		}
	}()
	return nil
}

// Release drops one reference to key. The last one removes the value,
// stops its Run (waiting for it to return) and closes it; the error is
// Close's.
func (p *Pool) Release(key string) error {
	p.mu.Lock()
	e, ok := p.m[key]
	if !ok {
		p.mu.Unlock()
		return ErrNotHeld
	}
	e.refs--
	if e.refs > 0 {
		p.mu.Unlock()
		return nil
	}
	delete(p.m, key)
	p.mu.Unlock()
	if e.cancel != nil {
		e.cancel()
		<-e.done
	}
	if c, ok := e.val.(Closer); ok {
		return c.Close()
	}
	return nil
}

// Refs returns how many references key has (0 when absent).
func (p *Pool) Refs(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[key]; ok {
		return e.refs
	}
	return 0
}

// Keys returns the keys held, sorted.
func (p *Pool) Keys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.m))
	for k := range p.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Lease is a set of references taken in order, released together in the
// reverse order (a component acquired after the one it depends on goes
// first). A generation holds one; a failed build releases it, as caddy's
// CleanerUpper does for a failed provision.
type Lease struct {
	pool *Pool
	keys []string
}

// NewLease returns an empty lease on p.
func (p *Pool) NewLease() *Lease { return &Lease{pool: p} }

// Acquire is Pool.Acquire, recording the reference in the lease.
func (l *Lease) Acquire(key string, build func() (any, error)) (any, bool, error) {
	v, loaded, err := l.pool.Acquire(key, build)
	if err == nil {
		l.keys = append(l.keys, key)
	}
	return v, loaded, err
}

// Keys are the keys the lease holds, in acquisition order (a key acquired
// twice appears twice).
func (l *Lease) Keys() []string { return append([]string(nil), l.keys...) }

// Start starts every held value's background work under ctx.
func (l *Lease) Start(ctx context.Context) error {
	var errs []error
	for _, k := range l.keys {
		errs = append(errs, l.pool.Start(ctx, k))
	}
	return errors.Join(errs...)
}

// Release drops every reference the lease holds, newest first. It is safe
// to call more than once.
func (l *Lease) Release() error {
	var errs []error
	for i := len(l.keys) - 1; i >= 0; i-- {
		errs = append(errs, l.pool.Release(l.keys[i]))
	}
	l.keys = nil
	return errors.Join(errs...)
}
