package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	"github.com/ext-authz/ext-authz/internal/decisionlog"
	"github.com/ext-authz/ext-authz/internal/grpcserver"
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

// decisionLogConfig is telemetry.log.decisions: denials all (default),
// sampled or none; allow_sample_rate (default 0); max_per_second (default
// 1000; negative: no cap). See internal/decisionlog.
type decisionLogConfig = decisionlog.Config

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
	// configTime and configHash describe the config serving now: when it
	// was loaded and the SHA-256 of the file's bytes as written (${NAME}
	// placeholders unexpanded, so no value from the environment enters it).
	configTime prometheus.Gauge
	configHash *prometheus.GaugeVec
	grpc       *grpcserver.Metrics
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
	for _, r := range []string{"success", "failure"} {
		t.reloads.WithLabelValues(r) // present, at 0, before the first reload
	}
	t.configTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ext_authz_config_last_reload_success_timestamp_seconds",
		Help: "When the config serving now was loaded (at start or by a reload), Unix seconds.",
	})
	t.configHash = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ext_authz_config_hash",
		Help: "1 for the SHA-256 of the config file serving now, as written (sha256sum of the file; environment placeholders unexpanded).",
	}, []string{"sha256"})
	ver, goVersion, revision := buildInfo()
	bi := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ext_authz_build_info",
		Help: "1, labelled with the version, the Go version and the VCS revision of the running binary.",
	}, []string{"version", "goversion", "revision"})
	bi.WithLabelValues(ver, goVersion, revision).Set(1)
	t.registry.MustRegister(t.reloads, t.configTime, t.configHash, bi)
	t.grpc = grpcserver.NewMetrics(t.registry)
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

// errorAttrs are the log attributes of a possibly joined error: the whole
// text, and each error on its own, so a rejected config shows every
// mistake, not only the first line a log viewer displays.
func errorAttrs(err error) []any {
	list := flattenErrors(err)
	texts := make([]string, len(list))
	for i, e := range list {
		texts[i] = e.Error()
	}
	return []any{"error", err, "error_count", len(texts), "errors", texts}
}

func flattenErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// configLoaded records that cfg now serves.
func (t *telemetry) configLoaded(cfg *fileConfig) {
	t.configTime.SetToCurrentTime()
	t.configHash.Reset()
	t.configHash.WithLabelValues(cfg.sum).Set(1)
}

// tracing reports whether spans are recorded at all; when not, the Check
// path skips trace-context extraction.
func (t *telemetry) tracing() bool {
	_, isNoop := t.tracer.(noop.Tracer)
	return !isNoop
}

// decisionLog adapts internal/decisionlog to extauthz's Observe hook.
type decisionLog struct{ l *decisionlog.Log }

func newDecisionLog(logger *slog.Logger, c decisionLogConfig, reg prometheus.Registerer) *decisionLog {
	return &decisionLog{l: decisionlog.New(logger, c, reg)}
}

// observe is the extauthz Observe hook.
func (d *decisionLog) observe(ctx context.Context, r *authz.Request, dec *authz.Decision, elapsed time.Duration) {
	if !d.l.Sampled(dec.Allowed()) {
		return
	}
	e := decisionlog.Entry{
		DecisionID: dec.ID, RequestID: r.RequestID, Result: dec.Code.String(), Reason: dec.Reason, Rule: dec.Rule,
		Method: r.Method, Host: r.Host, Path: r.Path, Latency: elapsed,
	}
	if dec.Identity != nil {
		e.Identified, e.Subject, e.Authenticator = true, dec.Identity.Subject, dec.Identity.Authenticator
	}
	d.l.Write(ctx, &e)
}

// buildInfo is the ext_authz_build_info gauge's labels: the stamped
// version (main.version, else the module's), the Go version, and the VCS
// revision the binary was built from ("-dirty" with local changes).
func buildInfo() (ver, goVersion, revision string) {
	ver, goVersion, revision = version, runtime.Version(), "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if ver == "" {
			ver = "unknown"
		}
		return ver, goVersion, revision
	}
	if ver == "" {
		ver = bi.Main.Version
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && revision != "unknown" {
		revision += "-dirty"
	}
	return ver, goVersion, revision
}
