package extauthz

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/authz/transport"
)

// Metrics are the Check-level series: the decision series every transport
// shares (transport.Metrics) and the gRPC adapter's own count of
// CheckRequests it could not decode.
type Metrics struct {
	decisions *transport.Metrics
	// unreadable counts CheckRequests the Codec could not decode, by why.
	unreadable *prometheus.CounterVec
}

// NewMetrics registers the series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: transport.NewMetrics(reg),
		unreadable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_unreadable_requests_total",
			Help: "CheckRequests that could not be decoded (answered 400 unreadable_request), by reason: invalid_utf8, too_deep, malformed.",
		}, []string{"reason"}),
	}
	for _, r := range unreadableReasons {
		m.unreadable.WithLabelValues(r)
	}
	reg.MustRegister(m.unreadable)
	return m
}

// Decisions are the shared decision series, for a second transport to
// count in.
func (m *Metrics) Decisions() *transport.Metrics { return m.decisions }

// InFlight is the in-flight gauge, for tests and readiness checks.
func (m *Metrics) InFlight() prometheus.Gauge { return m.decisions.InFlight() }
