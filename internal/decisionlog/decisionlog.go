package decisionlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Config is telemetry.log.decisions. Defaults are the caller's (the config
// file's): denials all, no allowed decisions, 1000 lines a second.
type Config struct {
	// Denials is all, sampled (at AllowSampleRate) or none.
	Denials string `yaml:"denials"`
	// AllowSampleRate is the fraction of allowed decisions logged, 0..1.
	AllowSampleRate float64 `yaml:"allow_sample_rate"`
	// MaxPerSecond caps decision lines; the excess is counted. Negative
	// means no cap; zero logs nothing.
	MaxPerSecond int `yaml:"max_per_second"`
}

// Entry is one decision, as logged.
type Entry struct {
	DecisionID string
	RequestID  string
	Result     string // the decision's code
	Reason     string
	Rule       string
	Method     string
	Host       string
	// Path is the request path without its query (a query may carry
	// tokens).
	Path    string
	Latency time.Duration
	// Subject and Authenticator are set for an authenticated request; the
	// subject is logged only as SubjectHash.
	Subject       string
	Authenticator string
	Identified    bool
	// Plan and RateLimitPolicy are the caller's rate-limit plan and the
	// effective limit (authz.Decision.RateLimitPolicy), when set.
	Plan            string
	RateLimitPolicy string
	// Shadow are the shadow rules' would-be decisions (authz.Decision.Shadow)
	// as "rule:result:reason", logged as one space-separated field.
	Shadow []string
}

// The client chooses these fields' lengths (a path may be near the 1 MiB
// message limit), so a decision line keeps only their start: enough to
// find the route, never a megabyte log line.
const (
	MaxPath      = 1024
	MaxHost      = 256
	MaxMethod    = 32
	MaxRequestID = 128
)

// Log writes decision lines. It starts no goroutine.
type Log struct {
	logger       *slog.Logger
	denials      string
	allowRate    float64
	maxPerSecond int
	dropped      prometheus.Counter

	mu     sync.Mutex
	second int64
	count  int
}

// New registers the dropped-lines counter on reg (nil: not registered).
func New(logger *slog.Logger, c Config, reg prometheus.Registerer) *Log {
	d := &Log{
		logger: logger, denials: c.Denials, allowRate: c.AllowSampleRate, maxPerSecond: c.MaxPerSecond,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ext_authz_decision_logs_dropped_total",
			Help: "Decision log lines not written because of log.decisions.max_per_second.",
		}),
	}
	if reg != nil {
		reg.MustRegister(d.dropped)
	}
	return d
}

// Sampled reports whether a decision with this outcome is to be logged.
// The common case, an allowed decision with no allowed sampling, is
// answered inline.
func (d *Log) Sampled(allowed bool) bool {
	if allowed && d.allowRate <= 0 {
		return false
	}
	return d.sampled(allowed)
}

func (d *Log) sampled(allowed bool) bool {
	if allowed {
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

// Write logs e, unless this second's cap is reached (then it counts it).
func (d *Log) Write(ctx context.Context, e *Entry) {
	if !d.admit() {
		d.dropped.Inc()
		return
	}
	attrs := []slog.Attr{
		slog.String("decision_id", e.DecisionID),
		slog.String("request_id", Clip(e.RequestID, MaxRequestID)),
		slog.String("result", e.Result),
		slog.String("reason", e.Reason),
		slog.String("rule", e.Rule),
		slog.String("method", Clip(e.Method, MaxMethod)),
		slog.String("host", Clip(e.Host, MaxHost)),
		slog.String("path", Clip(e.Path, MaxPath)),
		slog.Int64("latency_us", e.Latency.Microseconds()),
	}
	if len(e.Path) > MaxPath {
		attrs = append(attrs, slog.Int("path_bytes", len(e.Path)))
	}
	if len(e.Shadow) > 0 {
		attrs = append(attrs, slog.String("shadow", strings.Join(e.Shadow, " ")))
	}
	if e.Identified {
		attrs = append(attrs, slog.String("subject_hash", SubjectHash(e.Subject)),
			slog.String("authenticator", e.Authenticator))
	}
	if e.Plan != "" {
		attrs = append(attrs, slog.String("plan", e.Plan))
	}
	if e.RateLimitPolicy != "" {
		attrs = append(attrs, slog.String("rate_limit_policy", e.RateLimitPolicy))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	d.logger.LogAttrs(ctx, slog.LevelInfo, "decision", attrs...)
}

func (d *Log) admit() bool {
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

// Clip cuts s to at most n bytes, at a UTF-8 boundary, marking a cut with
// "...".
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("...")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// SubjectHash pseudonymises a subject for logs: stable, so one user's
// lines correlate, but not the subject itself.
func SubjectHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}
