package grpcedge_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ext-authz/ext-authz/internal/grpcedge"
)

// BenchmarkUnaryOverLoopback is what the edge costs a call: the same
// unary health Check over a loopback socket, served from a bare listener
// and from a grpcedge.Listener with every bound on (frame following both
// ways, a write deadline per write, metrics). Compare the two with
// benchstat.
func BenchmarkUnaryOverLoopback(b *testing.B) {
	for _, bc := range []struct {
		name string
		wrap func(net.Listener) net.Listener
	}{
		{"listener=bare", func(l net.Listener) net.Listener { return l }},
		{"listener=edge/write_timeout=off", func(l net.Listener) net.Listener {
			return grpcedge.NewListener(l, grpcedge.Options{MaxConnections: 1000, AbuseCooldown: time.Second, Metrics: grpcedge.NewMetrics(prometheus.NewRegistry())})
		}},
		{"listener=edge", func(l net.Listener) net.Listener {
			return grpcedge.NewListener(l, grpcedge.Options{MaxConnections: 1000, WriteTimeout: 10 * time.Second,
				AbuseCooldown: time.Second, Metrics: grpcedge.NewMetrics(prometheus.NewRegistry())})
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := grpc.NewServer()
			healthgrpc.RegisterHealthServer(srv, health.NewServer())
			done := make(chan struct{})
			go func() { defer close(done); _ = srv.Serve(bc.wrap(raw)) }()
			defer func() { srv.Stop(); <-done }()
			cc, err := grpc.NewClient(raw.Addr().String(), grpc.WithTransportCredentials(insecureCreds()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			client := healthgrpc.NewHealthClient(cc)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.Check(context.Background(), &healthgrpc.HealthCheckRequest{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
