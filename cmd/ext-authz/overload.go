package main

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// overloadConfig is server.overload: admission control for Check and
// ShouldRateLimit.
//
// Without it, a burst larger than the CPU can serve (or a dependency that
// slows every call) piles up goroutines and decoded requests until callers
// time out, and the server goes on deciding for callers that left long ago.
// With it, at most max_in_flight calls are decided at once; up to
// max_queued more wait for a turn, each no longer than max_queue_wait or
// its own deadline; the rest are refused at once with RESOURCE_EXHAUSTED,
// which Envoy turns into its status_on_error. Memory held by calls is then
// bounded by (max_in_flight + max_queued) × the request size.
type overloadConfig struct {
	// MaxInFlight bounds calls being decided at once. Default 1024; a
	// negative value turns admission control off.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxQueued bounds calls waiting for a turn. Default 1024; a negative
	// value refuses at once whenever max_in_flight calls are running.
	MaxQueued int `yaml:"max_queued"`
	// MaxQueueWait bounds one call's wait for a turn; the caller's deadline
	// bounds it too. Default 100ms: half of Envoy's default ext_authz
	// timeout, so a call that waited still has time to be decided.
	MaxQueueWait time.Duration `yaml:"max_queue_wait"`
}

func (c *overloadConfig) applyDefaults() {
	setDefault(&c.MaxInFlight, 1024)
	setDefault(&c.MaxQueued, 1024)
	setDefault(&c.MaxQueueWait, 100*time.Millisecond)
}

func (c *overloadConfig) validate() error {
	if c.MaxQueueWait < 0 {
		return yamlfile.Errorf("max_queue_wait", "must not be negative")
	}
	return nil
}

// Reasons a call is refused admission (the reason label).
const (
	rejectQueueFull    = "queue_full"
	rejectQueueTimeout = "queue_timeout"
	rejectCallerGone   = "caller_gone"
)

// admission is the semaphore and queue behind overloadConfig.
type admission struct {
	slots     chan struct{}
	queued    atomic.Int64
	maxQueued int64
	maxWait   time.Duration

	rejected *prometheus.CounterVec
	// late counts calls decided after their caller had gone: work the
	// server did for nobody. Counted with admission on or off.
	late prometheus.Counter
	off  bool
}

// newAdmission registers the overload series; with max_in_flight < 0 the
// returned admission admits everything and only counts late calls.
func newAdmission(c overloadConfig, reg prometheus.Registerer) *admission {
	a := &admission{
		off:       c.MaxInFlight < 0,
		slots:     make(chan struct{}, max(c.MaxInFlight, 0)),
		maxQueued: int64(max(c.MaxQueued, 0)),
		maxWait:   c.MaxQueueWait,
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_overload_rejected_total",
			Help: "Check and ShouldRateLimit calls refused by admission control, by reason (queue_full, queue_timeout, caller_gone).",
		}, []string{"reason"}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ext_authz_overload_late_total",
			Help: "Check and ShouldRateLimit calls decided after the caller's deadline had passed or it had cancelled: wasted work.",
		}),
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ext_authz_overload_queued",
		Help: "Calls waiting for admission (server.overload.max_in_flight calls are being decided).",
	}, func() float64 { return float64(a.queued.Load()) })
	for _, r := range []string{rejectQueueFull, rejectQueueTimeout, rejectCallerGone} {
		a.rejected.WithLabelValues(r)
	}
	reg.MustRegister(a.rejected, a.late, queued)
	return a
}

// errOverloaded is what a refused call answers.
var errOverloaded = status.Error(codes.ResourceExhausted, "ext-authz overloaded: try another replica")

// acquire takes a turn for a call, waiting in the queue if it must. It
// returns a gRPC status error when the call is refused; release must follow
// a nil return.
func (a *admission) acquire(ctx context.Context) error {
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
		a.rejected.WithLabelValues(rejectQueueFull).Inc()
		return errOverloaded
	}
	defer a.queued.Add(-1)
	t := time.NewTimer(a.maxWait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		// Both may be ready at once; a caller that has left gets no work.
		if err := ctx.Err(); err != nil {
			a.release()
			return a.gone(err)
		}
		return nil
	case <-ctx.Done():
		return a.gone(ctx.Err())
	case <-t.C:
		a.rejected.WithLabelValues(rejectQueueTimeout).Inc()
		return errOverloaded
	}
}

func (a *admission) release() { <-a.slots }

func (a *admission) gone(err error) error {
	a.rejected.WithLabelValues(rejectCallerGone).Inc()
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, "caller's deadline passed before the call was decided")
	}
	return status.Error(codes.Canceled, "caller cancelled before the call was decided")
}

// admitted are the methods admission control applies to: the decisions.
// Health and reflection stay cheap and always answer.
var admitted = map[string]bool{
	authv3.Authorization_Check_FullMethodName:             true,
	rlsv3.RateLimitService_ShouldRateLimit_FullMethodName: true,
}

// admitUnary is the interceptor.
func (a *admission) admitUnary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !admitted[info.FullMethod] {
			return handler(ctx, req)
		}
		if !a.off {
			if err := a.acquire(ctx); err != nil {
				return nil, err
			}
			defer a.release()
		}
		resp, err := handler(ctx, req)
		if ctx.Err() != nil {
			a.late.Inc()
		}
		return resp, err
	}
}
