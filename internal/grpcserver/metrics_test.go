package grpcserver

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestGRPCMetricsCodes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	u := m.Unary()
	info := &grpc.UnaryServerInfo{FullMethod: "/envoy.service.auth.v3.Authorization/Check"}
	for _, err := range []error{nil, status.Error(codes.ResourceExhausted, "x"), status.Error(codes.Code(99), "odd"), context.Canceled} {
		_, _ = u(context.Background(), nil, info, func(context.Context, any) (any, error) { return nil, err })
	}
	for code, want := range map[string]float64{"OK": 1, "ResourceExhausted": 1, "Unknown": 1, "Canceled": 1} {
		got := testutil.ToFloat64(m.handled.WithLabelValues("unary", "envoy.service.auth.v3.Authorization", "Check", code))
		if got != want {
			t.Errorf("handled{%s} = %v, want %v", code, got, want)
		}
	}
	if got := testutil.ToFloat64(m.started.WithLabelValues("unary", "envoy.service.auth.v3.Authorization", "Check")); got != 4 {
		t.Errorf("started = %v", got)
	}
	for _, tt := range []struct{ give, svc, meth string }{
		{"/a.B/C", "a.B", "C"}, {"/grpc.health.v1.Health/Watch", "grpc.health.v1.Health", "Watch"}, {"odd", "unknown", "odd"},
	} {
		if s, m := splitMethod(tt.give); s != tt.svc || m != tt.meth {
			t.Errorf("splitMethod(%q) = %q %q", tt.give, s, m)
		}
	}
}

// BenchmarkGRPCMetrics is the cost the metrics interceptor adds to a call:
// compare "interceptor" with "bare" (the handler alone) in the same run.
func BenchmarkGRPCMetrics(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	srv := grpc.NewServer()
	defer srv.Stop()
	m.Initialize(srv) // no services: the lookup falls back; then a real one
	all := map[string]*methodSeries{"/envoy.service.auth.v3.Authorization/Check": m.seriesFor("unary", "/envoy.service.auth.v3.Authorization/Check")}
	m.methods.Store(&all)
	u := m.Unary()
	info := &grpc.UnaryServerInfo{FullMethod: "/envoy.service.auth.v3.Authorization/Check"}
	h := func(context.Context, any) (any, error) { return nil, nil }
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = h(context.Background(), nil)
			}
		})
	})
	b.Run("interceptor", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = u(context.Background(), nil, info, h)
			}
		})
	})
}
