package extauthz_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// BenchmarkCheck measures the whole handler (proto in, proto out) without
// the network.
func BenchmarkCheck(b *testing.B) {
	srv := extauthz.New(testPipeline(b), extauthz.Options{})
	cases := []struct {
		name      string
		give      extauthz.HTTPRequest
		wantAllow bool
	}{
		{"rule=anonymous/result=allow", extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: "/healthz", RequestID: "r"}, true},
		{"rule=none/result=deny", extauthz.HTTPRequest{Method: "GET", Host: "elsewhere.org", Path: "/", RequestID: "r"}, false},
		{"rule=api/result=deny-401", extauthz.HTTPRequest{Method: "GET", Host: "api.example.com", Path: "/api/orders", RequestID: "r"}, false},
		{"rule=api/auth=static/result=allow", extauthz.HTTPRequest{Method: "GET", Host: "api.example.com", Path: "/api/orders?page=2",
			Headers: [][2]string{{"x-api-key", "k-alice"}, {"user-agent", "bench"}, {"accept", "*/*"}}, RequestID: "r"}, true},
	}
	for _, c := range cases {
		req := extauthz.BuildCheckRequest(c.give)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				resp, _ := srv.Check(ctx, req)
				if (resp.GetStatus().GetCode() == 0) != c.wantAllow {
					b.Fatalf("unexpected decision %v", resp.GetStatus())
				}
			}
		})
	}
}

// BenchmarkCheckTelemetry shows what metrics and tracing cost on the Check
// path: the same authenticated allow with telemetry off, with metrics, and
// with metrics and tracing sampled at 1 %.
func BenchmarkCheckTelemetry(b *testing.B) {
	req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "api.example.com", Path: "/api/orders?page=2",
		Headers: [][2]string{{"x-api-key", "k-alice"}, {"user-agent", "bench"}, {"accept", "*/*"}}, RequestID: "r"})
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cases := []struct {
		name string
		opts func() extauthz.Options
	}{
		{"telemetry=off", func() extauthz.Options { return extauthz.Options{} }},
		{"telemetry=metrics", func() extauthz.Options {
			return extauthz.Options{Metrics: extauthz.NewMetrics(prometheus.NewRegistry())}
		}},
		{"telemetry=metrics+trace1pct", func() extauthz.Options {
			return extauthz.Options{Metrics: extauthz.NewMetrics(prometheus.NewRegistry()), Tracer: tp.Tracer("bench")}
		}},
	}
	for _, c := range cases {
		srv := extauthz.New(testPipeline(b), c.opts())
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				if resp, _ := srv.Check(ctx, req); resp.GetStatus().GetCode() != 0 {
					b.Fatal("denied")
				}
			}
		})
	}
}
