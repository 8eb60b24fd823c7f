package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/telemetry"
	"github.com/ext-authz/ext-authz/tokens"
)

// BenchmarkServeHooks is what the gRPC server adds around each Check:
// the admission interceptor and the decision-log Observe hook, for an
// allowed decision (not sampled) and a denied one (logged, discarded).
func BenchmarkServeHooks(b *testing.B) {
	adm := newAdmission(overloadConfig{MaxInFlight: 1024, MaxQueued: 1024, MaxQueueWait: 100 * time.Millisecond}, prometheus.NewRegistry()).admitUnary()
	dl := newDecisionLog(slog.New(slog.DiscardHandler), telemetry.DecisionLogConfig{Denials: "all", MaxPerSecond: -1}, prometheus.NewRegistry())
	req := &authz.Request{Method: "GET", Host: "shop.example.com", Path: "/api/orders", RequestID: "rid"}
	info := &grpc.UnaryServerInfo{FullMethod: "/envoy.service.auth.v3.Authorization/Check"}
	for _, c := range []struct {
		name string
		dec  *authz.Decision
	}{
		{"allowed", &authz.Decision{Code: authz.OK, ID: "d", Rule: "api", Identity: &authz.Identity{Principal: tokens.Principal{Subject: "alice"}, Authenticator: "keys"}}},
		{"denied", &authz.Decision{Code: authz.Unauthenticated, ID: "d", Rule: "api", Reason: "missing"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := func(ctx context.Context, _ any) (any, error) {
				dl.observe(ctx, req, c.dec, time.Microsecond)
				return nil, nil
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					_, _ = adm(ctx, nil, info, h)
				}
			})
		})
	}
}
