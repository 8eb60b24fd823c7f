package authz_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
)

func TestVerifySpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	p, err := authz.NewPipeline(testPolicy(), testAuthenticators(), authz.Options{NewID: authztest.SequentialIDs(), Tracer: tp.Tracer("t")})
	if err != nil {
		t.Fatal(err)
	}

	// No recording parent: no spans at all.
	p.Decide(context.Background(), req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"))
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans without a recording parent, want 0", n)
	}

	ctx, parent := tp.Tracer("t").Start(context.Background(), "check")
	d := p.Decide(ctx, req("GET", "api.example.com", "/api/x", "x-api-key", "nope", "authorization", "Bearer t-bob"))
	parent.End()
	if !d.Allowed() {
		t.Fatalf("denied: %s", d.Reason)
	}
	type got struct{ authenticator, outcome string }
	var verifies []got
	for _, s := range exp.GetSpans() {
		if s.Name != "ext_authz.verify" {
			continue
		}
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("verify span's parent is %s, want the Check span", s.Parent.SpanID())
		}
		var g got
		for _, a := range s.Attributes {
			switch a.Key {
			case "ext_authz.authenticator":
				g.authenticator = a.Value.AsString()
			case "ext_authz.outcome":
				g.outcome = a.Value.AsString()
			}
		}
		verifies = append(verifies, g)
	}
	want := []got{{"keys", "unknown_credential"}, {"bearer", "accepted"}}
	if len(verifies) != len(want) || verifies[0] != want[0] || verifies[1] != want[1] {
		t.Fatalf("verify spans = %+v, want %+v", verifies, want)
	}
}
