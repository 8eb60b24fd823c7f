package extauthz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ext-authz/ext-authz/authz/extauthz"
)

func TestSpanJoinsGatewayTrace(t *testing.T) {
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	tests := []struct {
		name    string
		headers [][2]string
	}{
		{"w3c traceparent", [][2]string{{"traceparent", "00-" + traceID + "-" + spanID + "-01"}}},
		{"b3 multi", [][2]string{{"x-b3-traceid", traceID}, {"x-b3-spanid", spanID}, {"x-b3-sampled", "1"}}},
		{"b3 single", [][2]string{{"b3", traceID + "-" + spanID + "-1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
			srv := extauthz.New(testPipeline(t), extauthz.Options{
				Tracer: tp.Tracer("test"),
				Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{},
					b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader|b3.B3SingleHeader))),
			})
			req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "a.example.com", Path: "/api/x",
				Headers: append(tt.headers, [2]string{"x-api-key", "k-alice"})})
			if _, err := srv.Check(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			spans := exp.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans exported, want 1 (the parent is sampled, so ours must be)", len(spans))
			}
			s := spans[0]
			if s.SpanKind != trace.SpanKindServer {
				t.Errorf("kind = %v", s.SpanKind)
			}
			if got := s.SpanContext.TraceID().String(); got != traceID {
				t.Errorf("trace id = %s, want the gateway's %s", got, traceID)
			}
			if got := s.Parent.SpanID().String(); got != spanID || !s.Parent.IsRemote() {
				t.Errorf("parent = %s (remote %v), want the gateway's span %s", got, s.Parent.IsRemote(), spanID)
			}
			attrs := map[string]string{}
			for _, a := range s.Attributes {
				attrs[string(a.Key)] = a.Value.String()
			}
			if attrs["ext_authz.result"] != "ok" || attrs["ext_authz.rule"] != "api" {
				t.Errorf("attributes = %v", attrs)
			}
			for _, v := range attrs {
				if strings.Contains(v, "k-alice") {
					t.Errorf("credential in span attributes: %v", attrs)
				}
			}
		})
	}
}

func TestMetricsMove(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := extauthz.NewMetrics(reg)
	srv := extauthz.New(testPipeline(t), extauthz.Options{Metrics: m})
	for _, r := range []extauthz.HTTPRequest{
		{Method: "GET", Host: "a.example.com", Path: "/api/x", Headers: [][2]string{{"x-api-key", "k-alice"}}},
		{Method: "GET", Host: "a.example.com", Path: "/api/x"},
		{Method: "GET", Host: "a.example.com", Path: "/api/x"},
	} {
		if _, err := srv.Check(context.Background(), extauthz.BuildCheckRequest(r)); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP ext_authz_decisions_total Check decisions by result, reason and matched rule.
# TYPE ext_authz_decisions_total counter
ext_authz_decisions_total{reason="",result="ok",rule="api"} 1
ext_authz_decisions_total{reason="missing_credential",result="unauthenticated",rule="api"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ext_authz_decisions_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "ext_authz_check_duration_seconds"); n != 2 {
		t.Errorf("duration series = %d, want 2 (ok, unauthenticated)", n)
	}
	if v := testutil.ToFloat64(m.InFlight()); v != 0 {
		t.Errorf("in flight after calls = %v", v)
	}
}
