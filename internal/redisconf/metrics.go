package redisconf

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// MetricsHook times every Redis call and counts failures. Labels are the
// command name (a pipeline is "pipeline") and the error class: never a key,
// which may hold a session id or a user.
type MetricsHook struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	// dialFailed is the last failed dial, nil after a successful one. A
	// call whose context ran out while go-redis was retrying dials reports
	// only "context deadline exceeded"; the dial's error is the cause.
	dialFailed atomic.Pointer[dialFailure]
}

type dialFailure struct {
	at    time.Time
	class string
}

var _ redis.Hook = (*MetricsHook)(nil)

// NewMetricsHook registers the series on reg; add it with client.AddHook.
func NewMetricsHook(reg prometheus.Registerer) *MetricsHook {
	h := &MetricsHook{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ext_authz_redis_call_duration_seconds",
			Help:    "Redis round trips by command (pipeline for pipelines and batches).",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1},
		}, []string{"command"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_redis_errors_total",
			Help: "Failed Redis round trips by command (dial: failed connects) and error class (timeout, network, server, pool, canceled, other).",
		}, []string{"command", "class"}),
	}
	reg.MustRegister(h.duration, h.errors)
	return h
}

// DialHook counts failed dials and remembers the last one's class.
func (h *MetricsHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			class := errorClass(err)
			h.errors.WithLabelValues("dial", class).Inc()
			h.dialFailed.Store(&dialFailure{at: time.Now(), class: class})
			return conn, err
		}
		h.dialFailed.Store(nil)
		return conn, nil
	}
}

// ProcessHook times one command.
func (h *MetricsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.record(strings.ToLower(cmd.Name()), start, err)
		return err
	}
}

// ProcessPipelineHook times one pipeline round trip.
func (h *MetricsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.record("pipeline", start, err)
		return err
	}
}

func (h *MetricsHook) record(command string, start time.Time, err error) {
	h.duration.WithLabelValues(command).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, redis.Nil) {
		h.errors.WithLabelValues(command, h.classify(err, start)).Inc()
	}
}

// classify is errorClass, except that a timeout of a call during which a
// dial failed (and none succeeded since) is the dial's failure: a Redis
// that refuses connections is down, not slow.
func (h *MetricsHook) classify(err error, start time.Time) string {
	class := errorClass(err)
	if class == "timeout" {
		if f := h.dialFailed.Load(); f != nil && !f.at.Before(start) {
			return f.class
		}
	}
	return class
}

func errorClass(err error) string {
	var ne net.Error
	var re redis.Error
	switch {
	case errors.Is(err, redis.ErrPoolTimeout):
		return "pool"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ne), errors.Is(err, redis.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "network"
	case errors.As(err, &re):
		return "server"
	}
	return "other"
}
