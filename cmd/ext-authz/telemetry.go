package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// telemetryConfig is the `telemetry:` section.
type telemetryConfig struct {
	Log     logConfig     `yaml:"log"`
	Tracing tracingConfig `yaml:"tracing"`
}

type logConfig struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is json (default) or text.
	Format string `yaml:"format"`
	// Redact lists more attribute keys whose values never reach a log line
	// (authorization, cookie, set-cookie, proxy-authorization, x-api-key and
	// every configured credential header and cookie are always redacted).
	Redact    []string          `yaml:"redact"`
	Decisions decisionLogConfig `yaml:"decisions"`
}

type decisionLogConfig struct {
	// Denials is all (default), sampled (at allow_sample_rate) or none.
	Denials string `yaml:"denials"`
	// AllowSampleRate is the fraction of allowed decisions logged, 0..1.
	// Default 0.
	AllowSampleRate float64 `yaml:"allow_sample_rate"`
	// MaxPerSecond caps decision lines so an attack cannot flood the log;
	// the excess is counted in ext_authz_decision_logs_dropped_total.
	// Default 1000; negative means no cap.
	MaxPerSecond int `yaml:"max_per_second"`
}

type tracingConfig struct {
	// Enabled turns on OTLP trace export. Off by default.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the OTLP/gRPC collector, host:port.
	Endpoint string `yaml:"endpoint"`
	// Insecure sends without TLS (a collector sidecar or in-mesh service).
	Insecure bool `yaml:"insecure"`
	// SamplingRatio samples new traces; a request whose gateway span is
	// sampled is always sampled (parent-based). Default 0.01; 0 samples
	// only what the gateway sampled.
	SamplingRatio *float64 `yaml:"sampling_ratio"`
	// ServiceName is the service.name resource attribute. Default ext-authz.
	ServiceName string `yaml:"service_name"`
}

func (c *telemetryConfig) applyDefaults() {
	setDefault(&c.Log.Level, "info")
	setDefault(&c.Log.Format, "json")
	setDefault(&c.Log.Decisions.Denials, "all")
	setDefault(&c.Log.Decisions.MaxPerSecond, 1000)
	if c.Tracing.SamplingRatio == nil {
		r := 0.01
		c.Tracing.SamplingRatio = &r
	}
	setDefault(&c.Tracing.ServiceName, "ext-authz")
}

func (c *telemetryConfig) validate() error {
	var errs []error
	if _, err := parseLevel(c.Log.Level); err != nil {
		errs = append(errs, yamlfile.Errorf("log.level", "%v", err))
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		errs = append(errs, yamlfile.Errorf("log.format", "%q is not json or text", c.Log.Format))
	}
	switch c.Log.Decisions.Denials {
	case "all", "sampled", "none":
	default:
		errs = append(errs, yamlfile.Errorf("log.decisions.denials", "%q is not all, sampled or none", c.Log.Decisions.Denials))
	}
	if r := c.Log.Decisions.AllowSampleRate; r < 0 || r > 1 {
		errs = append(errs, yamlfile.Errorf("log.decisions.allow_sample_rate", "%v is not between 0 and 1", r))
	}
	if c.Tracing.Enabled && c.Tracing.Endpoint == "" {
		errs = append(errs, yamlfile.Errorf("tracing.endpoint", "required when tracing is enabled"))
	}
	if r := *c.Tracing.SamplingRatio; r < 0 || r > 1 {
		errs = append(errs, yamlfile.Errorf("tracing.sampling_ratio", "%v is not between 0 and 1", r))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// alwaysRedacted are attribute keys never logged with their value.
var alwaysRedacted = []string{"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "token", "credential", "password", "secret"}

// newRedactingLogger builds the process logger. Any attribute whose key (in
// any group) names a credential carrier has its value replaced: a second
// line of defence, since no code logs credentials on purpose.
func newRedactingLogger(w io.Writer, c logConfig, credentialKeys []string) *slog.Logger {
	r := &redactKeys{}
	r.add(append(append(append([]string{}, alwaysRedacted...), c.Redact...), credentialKeys...))
	return newRedactingLoggerWith(w, c, r)
}

func newRedactingLoggerWith(w io.Writer, c logConfig, r *redactKeys) *slog.Logger {
	level, _ := parseLevel(c.Level)
	opts := &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if r.has(a.Key) {
				return slog.String(a.Key, "[REDACTED]")
			}
			return a
		},
	}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// redactKeys is the set of attribute keys logged as [REDACTED]. It only
// grows: a reload that adds an authenticator adds its header or cookie
// name, and one that removes it keeps the name redacted.
type redactKeys struct {
	mu sync.Mutex // serialises add
	m  atomic.Pointer[map[string]bool]
}

func (r *redactKeys) add(keys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := map[string]bool{}
	if cur := r.m.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	for _, k := range keys {
		next[strings.ToLower(k)] = true
	}
	r.m.Store(&next)
}

func (r *redactKeys) has(key string) bool {
	m := r.m.Load()
	return m != nil && (*m)[strings.ToLower(key)]
}

// credentialKeys are the header and cookie names the config says carry
// credentials.
func credentialKeys(cfg *fileConfig) []string {
	var keys []string
	for _, a := range cfg.Authenticators {
		for _, k := range []string{a.Source.Header, a.Source.Cookie} {
			if k != "" {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// telemetry is the process's observability: one logger, one Prometheus
// registry, one tracer provider, built once in cmd and injected.
type telemetry struct {
	logger         *slog.Logger
	registry       *prometheus.Registry
	tracerProvider trace.TracerProvider
	tracer         trace.Tracer
	propagator     propagation.TextMapPropagator
	shutdown       func(context.Context) error
	decisions      *decisionLog
	// redact grows with every reload's credential carriers.
	redact *redactKeys

	reloads *prometheus.CounterVec
}

func newTelemetry(cfg *fileConfig, stderr io.Writer) (*telemetry, error) {
	tc := cfg.Telemetry
	t := &telemetry{
		redact:   &redactKeys{},
		registry: prometheus.NewRegistry(),
		// Envoy forwards W3C traceparent, or B3 when the mesh uses Zipkin.
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{},
			b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader))),
		tracerProvider: noop.NewTracerProvider(),
		shutdown:       func(context.Context) error { return nil },
	}
	t.redact.add(append(append(append([]string{}, alwaysRedacted...), tc.Log.Redact...), credentialKeys(cfg)...))
	t.logger = newRedactingLoggerWith(stderr, tc.Log, t.redact)
	t.tracer = t.tracerProvider.Tracer("")
	t.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	t.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ext_authz_config_reloads_total",
		Help: "Config reloads by result (success or failure).",
	}, []string{"result"})
	t.registry.MustRegister(t.reloads)
	t.decisions = newDecisionLog(t.logger, tc.Log.Decisions, t.registry)
	if tc.Tracing.Enabled {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(tc.Tracing.Endpoint)}
		if tc.Tracing.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		// The exporter connects lazily: a collector that is down costs
		// dropped spans, never a failed start or a slow Check.
		exp, err := otlptracegrpc.New(context.Background(), opts...)
		if err != nil {
			return nil, fmt.Errorf("telemetry.tracing: %w", err)
		}
		tp := sdktrace.NewTracerProvider(
			sdktrace.WithBatcher(exp),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*tc.Tracing.SamplingRatio))),
			sdktrace.WithResource(resource.NewSchemaless(
				semconv.ServiceName(tc.Tracing.ServiceName),
				semconv.ServiceVersion(versionString()),
			)),
		)
		t.tracerProvider = tp
		t.tracer = tp.Tracer("github.com/ext-authz/ext-authz")
		t.shutdown = tp.Shutdown
	}
	return t, nil
}

// tracing reports whether spans are recorded at all; when not, the Check
// path skips trace-context extraction.
func (t *telemetry) tracing() bool {
	_, isNoop := t.tracer.(noop.Tracer)
	return !isNoop
}

// redisLogger sends go-redis's own messages (pool and dial trouble) to the
// process logger instead of its default plain-text stderr logger.
// redisLogger sends go-redis's own log lines to our logger, at most one
// per format string every redisLogEvery: while Redis is down go-redis logs
// every failed dial, hundreds of lines a second, and the redis metrics
// already count each failure.
type redisLogger struct {
	logger *slog.Logger
	every  time.Duration

	mu   sync.Mutex
	last map[string]*redisLogState // keyed by format: go-redis has a few dozen
}

type redisLogState struct {
	at         time.Time
	suppressed int
}

const redisLogEvery = 10 * time.Second

func newRedisLogger(logger *slog.Logger) *redisLogger {
	return &redisLogger{logger: logger, every: redisLogEvery, last: map[string]*redisLogState{}}
}

func (l *redisLogger) Printf(ctx context.Context, format string, v ...any) {
	now := time.Now()
	l.mu.Lock()
	st := l.last[format]
	if st == nil {
		st = &redisLogState{}
		l.last[format] = st
	}
	if !st.at.IsZero() && now.Sub(st.at) < l.every {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.at, st.suppressed = now, 0
	l.mu.Unlock()
	l.logger.WarnContext(ctx, "redis client", "message", fmt.Sprintf(format, v...), "suppressed", suppressed)
}

// decisionLog writes sampled decision lines, capped per second.
type decisionLog struct {
	logger       *slog.Logger
	denials      string
	allowRate    float64
	maxPerSecond int
	dropped      prometheus.Counter

	mu     sync.Mutex
	second int64
	count  int
}

func newDecisionLog(logger *slog.Logger, c decisionLogConfig, reg prometheus.Registerer) *decisionLog {
	d := &decisionLog{
		logger: logger, denials: c.Denials, allowRate: c.AllowSampleRate, maxPerSecond: c.MaxPerSecond,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ext_authz_decision_logs_dropped_total",
			Help: "Decision log lines not written because of log.decisions.max_per_second.",
		}),
	}
	reg.MustRegister(d.dropped)
	return d
}

// observe is the extauthz Observe hook.
func (d *decisionLog) observe(ctx context.Context, r *authz.Request, dec *authz.Decision, elapsed time.Duration) {
	if !d.sampled(dec) {
		return
	}
	if !d.admit() {
		d.dropped.Inc()
		return
	}
	attrs := []slog.Attr{
		slog.String("decision_id", dec.ID),
		slog.String("request_id", clip(r.RequestID, maxLoggedRequestID)),
		slog.String("result", dec.Code.String()),
		slog.String("reason", dec.Reason),
		slog.String("rule", dec.Rule),
		slog.String("method", clip(r.Method, maxLoggedMethod)),
		slog.String("host", clip(r.Host, maxLoggedHost)),
		// The path without its query: a query string may carry tokens.
		slog.String("path", clip(r.Path, maxLoggedPath)),
		slog.Int64("latency_us", elapsed.Microseconds()),
	}
	if len(r.Path) > maxLoggedPath {
		attrs = append(attrs, slog.Int("path_bytes", len(r.Path)))
	}
	if dec.Identity != nil {
		attrs = append(attrs, slog.String("subject_hash", subjectHash(dec.Identity.Subject)),
			slog.String("authenticator", dec.Identity.Authenticator))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	d.logger.LogAttrs(ctx, slog.LevelInfo, "decision", attrs...)
}

// The client chooses these fields' lengths (a path may be near the 1 MiB
// message limit), so a decision line keeps only their start: enough to
// find the route, never a megabyte log line.
const (
	maxLoggedPath      = 1024
	maxLoggedHost      = 256
	maxLoggedMethod    = 32
	maxLoggedRequestID = 128
)

// clip cuts s to at most n bytes, at a UTF-8 boundary, marking a cut with
// "...".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("...")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

func (d *decisionLog) sampled(dec *authz.Decision) bool {
	if dec.Allowed() {
		return d.allowRate > 0 && rand.Float64() < d.allowRate
	}
	switch d.denials {
	case "all":
		return true
	case "sampled":
		return d.allowRate > 0 && rand.Float64() < d.allowRate
	}
	return false
}

func (d *decisionLog) admit() bool {
	if d.maxPerSecond < 0 {
		return true
	}
	now := time.Now().Unix()
	d.mu.Lock()
	defer d.mu.Unlock()
	if now != d.second {
		d.second, d.count = now, 0
	}
	d.count++
	return d.count <= d.maxPerSecond
}

// subjectHash pseudonymises a subject for logs: stable, so one user's lines
// correlate, but not the subject itself.
func subjectHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}
