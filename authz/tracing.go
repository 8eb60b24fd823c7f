package authz

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// startSpan starts a child span for a step of the pipeline, but only when
// the caller's span is recording: an unsampled or untraced Check pays
// nothing, not even a context allocation.
func (p *Pipeline) startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if p.tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return p.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan records the outcome word and, for a failure to decide, an error
// status; it accepts the nil span startSpan returns when not tracing.
func endSpan(span trace.Span, outcome string, failed bool) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.String("ext_authz.outcome", outcome))
	if failed {
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}
