package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"

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

	"github.com/ext-authz/ext-authz/internal/grpcserver"
)

// Telemetry is the process's observability: one logger, one Prometheus
// registry, one tracer provider, built once in cmd and injected.
type Telemetry struct {
	Logger         *slog.Logger
	Registry       *prometheus.Registry
	TracerProvider trace.TracerProvider
	Tracer         trace.Tracer
	Propagator     propagation.TextMapPropagator
	// Redact grows with every reload's credential carriers.
	Redact *RedactKeys
	// Reloads counts config reloads by result (success, failure).
	Reloads *prometheus.CounterVec
	// GRPC are the gRPC server's own series (internal/grpcserver).
	GRPC *grpcserver.Metrics

	shutdown func(context.Context) error
	// configTime and configHash describe the config serving now: when it
	// was loaded and the SHA-256 of the file's bytes as written (${NAME}
	// placeholders unexpanded, so no value from the environment enters it).
	configTime prometheus.Gauge
	configHash *prometheus.GaugeVec
}

// Options are New's optional inputs.
type Options struct {
	// Version is the version stamped into the binary ("": the module's).
	Version string
	// CredentialKeys are the header and cookie names the config says carry
	// credentials: redacted in every log line from the start.
	CredentialKeys []string
}

// New builds the logger (writing to stderr), the registry and, with
// tracing enabled, the OTLP exporter (which connects lazily). It starts no
// goroutine of its own; Shutdown flushes spans.
func New(c Config, stderr io.Writer, opts Options) (*Telemetry, error) {
	t := &Telemetry{
		Redact:   &RedactKeys{},
		Registry: prometheus.NewRegistry(),
		// Envoy forwards W3C traceparent, or B3 when the mesh uses Zipkin.
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{},
			b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader))),
		TracerProvider: noop.NewTracerProvider(),
		shutdown:       func(context.Context) error { return nil },
	}
	t.Redact.Add(append(append(append([]string{}, alwaysRedacted...), c.Log.Redact...), opts.CredentialKeys...))
	t.Logger = newRedactingLoggerWith(stderr, c.Log, t.Redact)
	t.Tracer = t.TracerProvider.Tracer("")
	t.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	t.Reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ext_authz_config_reloads_total",
		Help: "Config reloads by result (success or failure).",
	}, []string{"result"})
	for _, r := range []string{"success", "failure"} {
		t.Reloads.WithLabelValues(r) // present, at 0, before the first reload
	}
	t.configTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ext_authz_config_last_reload_success_timestamp_seconds",
		Help: "When the config serving now was loaded (at start or by a reload), Unix seconds.",
	})
	t.configHash = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ext_authz_config_hash",
		Help: "1 for the SHA-256 of the config file serving now, as written (sha256sum of the file; environment placeholders unexpanded).",
	}, []string{"sha256"})
	ver, goVersion, revision := buildInfo(opts.Version)
	bi := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ext_authz_build_info",
		Help: "1, labelled with the version, the Go version and the VCS revision of the running binary.",
	}, []string{"version", "goversion", "revision"})
	bi.WithLabelValues(ver, goVersion, revision).Set(1)
	t.Registry.MustRegister(t.Reloads, t.configTime, t.configHash, bi)
	t.GRPC = grpcserver.NewMetrics(t.Registry)
	if tc := c.Tracing; tc.Enabled {
		eopts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(tc.Endpoint)}
		if tc.Insecure {
			eopts = append(eopts, otlptracegrpc.WithInsecure())
		}
		// The exporter connects lazily: a collector that is down costs
		// dropped spans, never a failed start or a slow Check.
		exp, err := otlptracegrpc.New(context.Background(), eopts...)
		if err != nil {
			return nil, fmt.Errorf("telemetry.tracing: %w", err)
		}
		tp := sdktrace.NewTracerProvider(
			sdktrace.WithBatcher(exp),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*tc.SamplingRatio))),
			sdktrace.WithResource(resource.NewSchemaless(
				semconv.ServiceName(tc.ServiceName),
				semconv.ServiceVersion(Version(opts.Version)),
			)),
		)
		t.TracerProvider = tp
		t.Tracer = tp.Tracer("github.com/ext-authz/ext-authz")
		t.shutdown = tp.Shutdown
	}
	return t, nil
}

// Shutdown flushes and stops the tracer provider.
func (t *Telemetry) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// ConfigLoaded records that the config file whose bytes have the SHA-256
// sum (hex) serves now.
func (t *Telemetry) ConfigLoaded(sum string) {
	t.configTime.SetToCurrentTime()
	t.configHash.Reset()
	t.configHash.WithLabelValues(sum).Set(1)
}

// Tracing reports whether spans are recorded at all; when not, the Check
// path skips trace-context extraction.
func (t *Telemetry) Tracing() bool {
	_, isNoop := t.Tracer.(noop.Tracer)
	return !isNoop
}
