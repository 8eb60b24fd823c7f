package transport

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/decisionlog"
)

// Decider decides requests; *authz.Pipeline and *authz.Live implement it.
type Decider interface {
	Decide(ctx context.Context, r *authz.Request) authz.Decision
}

// Options are the optional parts of a Core; the zero value works.
type Options struct {
	// Observe, when set, is called once per decision with the request, the
	// decision and the time Decide took: for metrics and decision logs.
	Observe func(ctx context.Context, r *authz.Request, d *authz.Decision, elapsed time.Duration)
	// Metrics, when set, counts decisions and times them.
	Metrics *Metrics
	// Tracer, when set, starts a server span per decision. Its parent is the
	// gateway's span, extracted by Propagator from the request's headers
	// (Envoy forwards traceparent and B3 in them).
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// Core is the transport-neutral middle of an adapter: it asks the Decider
// and records the decision in the span, the series and the decision log.
type Core struct {
	decider    Decider
	observe    func(ctx context.Context, r *authz.Request, d *authz.Decision, elapsed time.Duration)
	metrics    *Metrics
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// NewCore returns a Core that asks d.
func NewCore(d Decider, opts Options) *Core {
	c := &Core{decider: d, observe: opts.Observe, metrics: opts.Metrics, tracer: opts.Tracer, propagator: opts.Propagator}
	if c.propagator == nil {
		c.propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{})
	}
	return c
}

// Metrics returns the series the Core records in (nil when none).
func (c *Core) Metrics() *Metrics { return c.metrics }

// Decide asks the Decider about r under a span named spanName, and records
// the decision.
func (c *Core) Decide(ctx context.Context, r *authz.Request, spanName string) authz.Decision {
	var d authz.Decision
	c.DecideInto(ctx, r, spanName, &d)
	return d
}

// DecideInto is Decide writing the decision into *d, which the caller
// owns: the decision log and the series take its address, so a Decision
// held by value would move to the heap on every call, and a transport that
// already keeps a per-call object on the heap (extauthz's) spares that
// allocation by keeping the Decision in it.
func (c *Core) DecideInto(ctx context.Context, r *authz.Request, spanName string, d *authz.Decision) {
	if c.metrics != nil {
		c.metrics.inFlight.Inc()
		defer c.metrics.inFlight.Dec()
	}
	var span trace.Span
	if c.tracer != nil {
		ctx = c.propagator.Extract(ctx, propagation.MapCarrier(r.Headers))
		ctx, span = c.tracer.Start(ctx, spanName, trace.WithSpanKind(trace.SpanKindServer))
	}
	start := time.Now()
	*d = c.decider.Decide(ctx, r)
	elapsed := time.Since(start)
	if span != nil {
		endSpan(span, r, d)
	}
	if c.metrics != nil {
		c.metrics.observe(d, elapsed)
	}
	if c.observe != nil {
		c.observe(ctx, r, d, elapsed)
	}
}

// Refused records a decision the adapter made without asking the Decider
// (a request it could not read): counted, logged, not timed.
func (c *Core) Refused(ctx context.Context, r *authz.Request, d *authz.Decision) {
	if c.metrics != nil {
		c.metrics.decisions.WithLabelValues(d.Code.String(), d.Reason, d.Rule).Inc()
	}
	if c.observe != nil {
		c.observe(ctx, r, d, 0)
	}
}

// endSpan records the decision on the span. Only Unavailable is an error: a
// denial is the service working.
func endSpan(span trace.Span, r *authz.Request, d *authz.Decision) {
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("ext_authz.decision_id", d.ID),
			attribute.String("ext_authz.result", d.Code.String()),
			attribute.String("ext_authz.reason", d.Reason),
			attribute.String("ext_authz.rule", d.Rule),
			attribute.Int("http.response.status_code", HTTPStatus(d.Code)),
		)
		if d.Code == authz.Unavailable {
			span.SetStatus(otelcodes.Error, d.Reason)
		}
	}
	span.End()
}

// httpStatus is the one table from decision codes to the HTTP status the
// client is answered with. (The gRPC adapter keeps its own column, the
// CheckResponse status code, next to its protos.)
var httpStatus = map[authz.Code]int{
	authz.OK:              200,
	authz.Unauthenticated: 401,
	authz.Forbidden:       403,
	authz.RateLimited:     429,
	authz.Unavailable:     503,
	authz.BadRequest:      400,
}

// HTTPStatus returns the HTTP status a decision code is answered with; an
// unknown code is a 403 (fail closed).
func HTTPStatus(c authz.Code) int {
	if s, ok := httpStatus[c]; ok {
		return s
	}
	return 403
}

// DenyHeaders are the response headers of a denial, in order: the body's
// type, no caching, one www-authenticate per challenge, then the
// decision's own response headers.
func DenyHeaders(d *authz.Decision) []authz.Header {
	hs := make([]authz.Header, 0, 2+len(d.Challenges)+len(d.ResponseHeaders))
	hs = append(hs, authz.Header{Name: "content-type", Value: "application/json"},
		authz.Header{Name: "cache-control", Value: "no-store"})
	for _, c := range d.Challenges {
		hs = append(hs, authz.Header{Name: "www-authenticate", Value: c})
	}
	return append(hs, d.ResponseHeaders...)
}

// DenyBody is the small JSON body of a denial. It names the class of error
// and the reason word, never any part of a credential. The request id is
// the client's (Envoy forwards a client's x-request-id unless told not
// to), so it is clipped: the body stays under a KiB whatever the request
// held. HTML escaping is off: it would turn each of a client's < > & into
// six bytes and is pointless in an application/json body.
func DenyBody(d *authz.Decision, requestID string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Error     string `json:"error"`
		Reason    string `json:"reason"`
		RequestID string `json:"request_id,omitempty"`
	}{d.Code.String(), d.Reason, decisionlog.Clip(ValidUTF8(decisionlog.Clip(requestID, MaxEchoedRequestID)), MaxEchoedRequestID)})
	return strings.TrimSuffix(b.String(), "\n")
}

// MaxEchoedRequestID bounds the request id echoed in a denial's body, in
// bytes. Envoy's own ids are 36-byte UUIDs.
const MaxEchoedRequestID = 128

// ValidUTF8 makes a string valid UTF-8: protobuf refuses to marshal
// anything else, and a value echoed from the request may not be.
func ValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
