package telemetry

import (
	"errors"
	"log/slog"

	"github.com/ext-authz/ext-authz/internal/decisionlog"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// Config is the `telemetry:` section.
type Config struct {
	Log     LogConfig     `yaml:"log"`
	Tracing TracingConfig `yaml:"tracing"`
}

// LogConfig is telemetry.log.
type LogConfig struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is json (default) or text.
	Format string `yaml:"format"`
	// Redact lists more attribute keys whose values never reach a log line
	// (authorization, cookie, set-cookie, proxy-authorization, x-api-key and
	// every configured credential header and cookie are always redacted).
	Redact    []string          `yaml:"redact"`
	Decisions DecisionLogConfig `yaml:"decisions"`
}

// DecisionLogConfig is telemetry.log.decisions: denials all (default),
// sampled or none; allow_sample_rate (default 0); max_per_second (default
// 1000; negative: no cap). See internal/decisionlog.
type DecisionLogConfig = decisionlog.Config

// TracingConfig is telemetry.tracing.
type TracingConfig struct {
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

// ApplyDefaults fills the unset fields.
func (c *Config) ApplyDefaults() {
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

// Validate checks the section after ApplyDefaults; paths are relative to it.
func (c *Config) Validate() error {
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

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}
