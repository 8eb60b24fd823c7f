package admission

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// Config is server.overload. The zero value, after ApplyDefaults, admits
// 1024 calls at once and queues 1024 more for up to 100ms.
type Config struct {
	// MaxInFlight bounds calls being decided at once. Default 1024; a
	// negative value turns admission control off.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxQueued bounds calls waiting for a turn. Default 1024; a negative
	// value refuses at once whenever MaxInFlight calls are running.
	MaxQueued int `yaml:"max_queued"`
	// MaxQueueWait bounds one call's wait for a turn; the caller's deadline
	// bounds it too. Default 100ms: half of Envoy's default ext_authz
	// timeout, so a call that waited still has time to be decided.
	MaxQueueWait time.Duration `yaml:"max_queue_wait"`
}

// ApplyDefaults fills in unset fields.
func (c *Config) ApplyDefaults() {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = 1024
	}
	if c.MaxQueueWait == 0 {
		c.MaxQueueWait = 100 * time.Millisecond
	}
}

// Validate checks the section; paths are relative to it.
func (c *Config) Validate() error {
	if c.MaxQueueWait < 0 {
		return yamlfile.Errorf("max_queue_wait", "must not be negative")
	}
	return nil
}

// Reasons a call is refused (the reason label).
const (
	ReasonQueueFull    = "queue_full"
	ReasonQueueTimeout = "queue_timeout"
	ReasonCallerGone   = "caller_gone"
)

// ErrOverloaded means the server is full; the caller should try another
// replica.
var ErrOverloaded = errors.New("overloaded: try another replica")

// ErrCallerGone wraps the caller's context error when it left before it got
// a turn.
var ErrCallerGone = errors.New("caller left before the call was decided")

// Controller is the semaphore and queue. It starts no goroutine.
type Controller struct {
	slots     chan struct{}
	queued    atomic.Int64
	maxQueued int64
	maxWait   time.Duration
	off       bool

	rejected *prometheus.CounterVec
	// late is counted here and exported by a CounterFunc, so that Done
	// stays small enough to inline on every call.
	late atomic.Uint64
}

// New registers the series on reg (nil: not registered) and returns a
// controller for c (after ApplyDefaults). With MaxInFlight < 0 it admits
// everything and only counts late calls.
func New(c Config, reg prometheus.Registerer) *Controller {
	a := &Controller{
		off:       c.MaxInFlight < 0,
		slots:     make(chan struct{}, max(c.MaxInFlight, 0)),
		maxQueued: int64(max(c.MaxQueued, 0)),
		maxWait:   c.MaxQueueWait,
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_overload_rejected_total",
			Help: "Check and ShouldRateLimit calls refused by admission control, by reason (queue_full, queue_timeout, caller_gone).",
		}, []string{"reason"}),
	}
	late := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ext_authz_overload_late_total",
		Help: "Check and ShouldRateLimit calls decided after the caller's deadline had passed or it had cancelled: wasted work.",
	}, func() float64 { return float64(a.late.Load()) })
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ext_authz_overload_queued",
		Help: "Calls waiting for admission (server.overload.max_in_flight calls are being decided).",
	}, func() float64 { return float64(a.queued.Load()) })
	for _, r := range []string{ReasonQueueFull, ReasonQueueTimeout, ReasonCallerGone} {
		a.rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(a.rejected, late, queued)
	}
	return a
}

// Off reports whether admission control is turned off.
func (a *Controller) Off() bool { return a.off }

// Acquire takes a turn for a call, waiting in the queue if it must. It
// returns ErrOverloaded, or an error wrapping ErrCallerGone and the
// context's error, when the call is refused; Release must follow a nil
// return. With admission off it always returns nil. (The fast path, a free
// turn, is small enough to inline into the transport's interceptor.)
func (a *Controller) Acquire(ctx context.Context) error {
	if a.off {
		return nil
	}
	if ctx.Err() == nil {
		select {
		case a.slots <- struct{}{}:
			return nil
		default:
		}
	}
	return a.wait(ctx)
}

// wait is Acquire's slow path: the caller has left, or every turn is taken.
func (a *Controller) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return a.gone(err)
	}
	select {
	case a.slots <- struct{}{}:
		return nil
	default:
	}
	if a.queued.Add(1) > a.maxQueued {
		a.queued.Add(-1)
		a.rejected.WithLabelValues(ReasonQueueFull).Inc()
		return ErrOverloaded
	}
	defer a.queued.Add(-1)
	t := time.NewTimer(a.maxWait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		// Both may be ready at once; a caller that has left gets no work.
		if err := ctx.Err(); err != nil {
			a.Release()
			return a.gone(err)
		}
		return nil
	case <-ctx.Done():
		return a.gone(ctx.Err())
	case <-t.C:
		a.rejected.WithLabelValues(ReasonQueueTimeout).Inc()
		return ErrOverloaded
	}
}

// Release gives back the turn a nil Acquire took.
func (a *Controller) Release() {
	if !a.off {
		<-a.slots
	}
}

// Done records the end of an admitted call: one whose caller had left by
// then counts as late (work done for nobody), with admission on or off.
func (a *Controller) Done(ctx context.Context) {
	if ctx.Err() != nil {
		a.late.Add(1)
	}
}

// Queued is how many calls wait for a turn now.
func (a *Controller) Queued() int64 { return a.queued.Load() }

// InFlight is how many turns are taken now.
func (a *Controller) InFlight() int { return len(a.slots) }

// Late is how many admitted calls ended after their caller had left.
func (a *Controller) Late() float64 { return float64(a.late.Load()) }

// Rejected is how many calls were refused for reason.
func (a *Controller) Rejected(reason string) float64 {
	var m dto.Metric
	if err := a.rejected.WithLabelValues(reason).Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func (a *Controller) gone(err error) error {
	a.rejected.WithLabelValues(ReasonCallerGone).Inc()
	return fmt.Errorf("%w: %w", ErrCallerGone, err)
}
