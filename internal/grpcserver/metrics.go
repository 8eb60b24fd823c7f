package grpcserver

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Metrics are the gRPC server series under the names
// go-grpc-prometheus uses (grpc_server_started_total, _handled_total,
// _handling_seconds), so the usual dashboards and alerts work without that
// dependency. Every registered method has every code's series from start.
type Metrics struct {
	started  *prometheus.CounterVec
	handled  *prometheus.CounterVec
	handling *prometheus.HistogramVec
	// methods are the pre-resolved series of each registered method,
	// built once by Initialize and only read afterwards.
	methods atomic.Pointer[map[string]*methodSeries]
}

// methodSeries are one method's series, looked up without hashing labels
// on the Check path.
type methodSeries struct {
	started  prometheus.Counter
	handled  [codes.Unauthenticated + 1]prometheus.Counter
	handling prometheus.Observer
}

// NewMetrics registers the series with reg (it panics, as MustRegister
// does, if they are registered there already).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	m := &Metrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "gRPC calls started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "gRPC calls completed on the server, by status code.",
		}, append(labels, "grpc_code")),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Time from a call's start to its status, on the server.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10},
		}, labels),
	}
	reg.MustRegister(m.started, m.handled, m.handling)
	return m
}

// splitMethod turns "/pkg.Service/Method" into its service and method.
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndex(full, "/"); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

func (m *Metrics) seriesFor(typ, full string) *methodSeries {
	svc, meth := splitMethod(full)
	s := &methodSeries{
		started:  m.started.WithLabelValues(typ, svc, meth),
		handling: m.handling.WithLabelValues(typ, svc, meth),
	}
	for c := range s.handled {
		s.handled[c] = m.handled.WithLabelValues(typ, svc, meth, codes.Code(c).String())
	}
	return s
}

// Initialize creates every series of every method srv serves (call it
// after registering the services).
func (m *Metrics) Initialize(srv *grpc.Server) {
	all := map[string]*methodSeries{}
	for name, info := range srv.GetServiceInfo() {
		for _, mi := range info.Methods {
			typ := "unary"
			switch {
			case mi.IsClientStream && mi.IsServerStream:
				typ = "bidi_stream"
			case mi.IsClientStream:
				typ = "client_stream"
			case mi.IsServerStream:
				typ = "server_stream"
			}
			full := "/" + name + "/" + mi.Name
			all[full] = m.seriesFor(typ, full)
		}
	}
	m.methods.Store(&all)
}

func (m *Metrics) lookup(typ, full string) *methodSeries {
	if all := m.methods.Load(); all != nil {
		if s, ok := (*all)[full]; ok {
			return s
		}
	}
	return m.seriesFor(typ, full)
}

func (s *methodSeries) done(start time.Time, err error) {
	// The code the client sees: grpc-go sends a context error from a
	// handler as Canceled or DeadlineExceeded, any other non-status error
	// as Unknown.
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	c := st.Code()
	if int(c) >= len(s.handled) {
		c = codes.Unknown
	}
	s.handled[c].Inc()
	s.handling.Observe(time.Since(start).Seconds())
}

// Unary records each unary call; it goes first in the chain so it sees
// the status a recovered panic or a refused admission gets.
func (m *Metrics) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		s := m.lookup("unary", info.FullMethod)
		s.started.Inc()
		start := time.Now()
		resp, err := handler(ctx, req)
		s.done(start, err)
		return resp, err
	}
}

// Stream records each streaming call.
func (m *Metrics) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		typ := "server_stream"
		switch {
		case info.IsClientStream && info.IsServerStream:
			typ = "bidi_stream"
		case info.IsClientStream:
			typ = "client_stream"
		}
		s := m.lookup(typ, info.FullMethod)
		s.started.Inc()
		start := time.Now()
		err := handler(srv, ss)
		s.done(start, err)
		return err
	}
}
