package transport

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/authz"
)

// Metrics are the decision-level series, shared by every transport: a
// decision is counted once whichever wire it came over. Labels are the
// decision's result, its reason word and the rule name: all bounded by the
// code and the config, never a subject, token or address.
type Metrics struct {
	decisions *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	inFlight  prometheus.Gauge
	shadow    *prometheus.CounterVec
}

// NewMetrics registers the series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_decisions_total",
			Help: "Check decisions by result, reason and matched rule.",
		}, []string{"result", "reason", "rule"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ext_authz_check_duration_seconds",
			Help: "Time to decide one Check, from request conversion to the decision.",
			// Tens of microseconds resolve a cached decision; the top buckets
			// show a dependency timing out.
			Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1},
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ext_authz_checks_in_flight",
			Help: "Checks being decided right now.",
		}),
	}
	m.shadow = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ext_authz_shadow_decisions_total",
		Help: "Would-be decisions of shadow rules (mode: shadow) by rule, the result it would have given, and the result enforced.",
	}, []string{"rule", "result", "enforced"})
	reg.MustRegister(m.decisions, m.duration, m.inFlight, m.shadow)
	return m
}

func (m *Metrics) observe(d *authz.Decision, elapsed time.Duration) {
	result := d.Code.String()
	m.decisions.WithLabelValues(result, d.Reason, d.Rule).Inc()
	m.duration.WithLabelValues(result).Observe(elapsed.Seconds())
	for _, s := range d.Shadow {
		m.shadow.WithLabelValues(s.Rule, s.Code.String(), result).Inc()
	}
}

// InFlight is the in-flight gauge, for tests and readiness checks.
func (m *Metrics) InFlight() prometheus.Gauge { return m.inFlight }
