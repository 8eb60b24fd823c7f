package httpauthz_test

import (
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ext-authz/ext-authz/authz/httpauthz"
	"github.com/ext-authz/ext-authz/authz/transport"
)

// TestSpanJoinsGatewayTrace: an HTTP check's span is a child of the
// gateway's, from the traceparent Envoy forwards, and carries the decision
// as the gRPC adapter's does.
func TestSpanJoinsGatewayTrace(t *testing.T) {
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	h := httpauthz.New(testPipeline(t), httpauthz.Options{Core: transport.Options{
		Tracer: tp.Tracer("test"), Propagator: propagation.TraceContext{}}})
	req := httptest.NewRequest("GET", "/admin/users", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-"+spanID+"-01")
	req.Header.Set("x-api-key", "k-alice")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 403 {
		t.Fatalf("status %d, want 403", w.Code)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.SpanKind != trace.SpanKindServer || s.SpanContext.TraceID().String() != traceID || s.Parent.SpanID().String() != spanID {
		t.Errorf("span kind %v trace %s parent %s; want a server span in the gateway's trace under its span",
			s.SpanKind, s.SpanContext.TraceID(), s.Parent.SpanID())
	}
	attrs := map[string]string{}
	for _, a := range s.Attributes {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["ext_authz.result"] != "forbidden" || attrs["ext_authz.reason"] != "insufficient_scope" || attrs["http.response.status_code"] != "403" {
		t.Errorf("attributes %v", attrs)
	}
}
