package grpcedge

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the connection-level series. No label carries an address.
type Metrics struct {
	open    prometheus.Gauge
	refused *prometheus.CounterVec
	// The refused series, resolved once.
	refusedLimit, refusedCooldown prometheus.Counter
	closed                        *prometheus.CounterVec
	goAways                       prometheus.Counter
	resets                        *prometheus.CounterVec
	// The two resets series, resolved once: a reset flood calls them
	// per frame.
	resetsEarly, resetsLate prometheus.Counter
}

// Reasons a connection is closed by the edge (the reason label).
const (
	CloseStreamResets = "stream_resets"
	CloseWriteTimeout = "write_timeout"
	CloseFlowControl  = "flow_control"
)

// Reasons a connection is refused at accept (the reason label).
const (
	RefusedLimit    = "limit"
	RefusedCooldown = "cooldown"
)

// NewMetrics registers the series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ext_authz_grpc_connections_open",
			Help: "Connections open on the gRPC port (at most server.edge.max_connections).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_grpc_connections_refused_total",
			Help: "Connections to the gRPC port closed at once, by reason: limit (server.edge.max_connections were open), cooldown (from an address whose connection was closed for its resets, within server.edge.abuse_cooldown).",
		}, []string{"reason"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_grpc_connections_closed_total",
			Help: "Connections the server closed for abuse, by reason: stream_resets (went on resetting or opening streams after its GOAWAY), write_timeout (the client stopped reading: a write blocked server.edge.write_timeout), flow_control (the client withholds flow-control window: a stream window under 16 KiB, or the connection's under 16 KiB for server.edge.write_timeout).",
		}, []string{"reason"}),
		goAways: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ext_authz_grpc_reset_goaways_total",
			Help: "GOAWAY (ENHANCE_YOUR_CALM) sent to connections over their early-reset budget; those that then ignore it are closed (connections_closed_total{reason=\"stream_resets\"}).",
		}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_grpc_stream_resets_total",
			Help: "RST_STREAM frames received from clients; early=true when the stream was reset within server.edge.early_reset_window of opening.",
		}, []string{"early"}),
	}
	for _, r := range []string{CloseStreamResets, CloseWriteTimeout, CloseFlowControl} {
		m.closed.WithLabelValues(r)
	}
	m.refusedLimit = m.refused.WithLabelValues(RefusedLimit)
	m.refusedCooldown = m.refused.WithLabelValues(RefusedCooldown)
	m.resetsEarly = m.resets.WithLabelValues("true")
	m.resetsLate = m.resets.WithLabelValues("false")
	reg.MustRegister(m.open, m.refused, m.closed, m.goAways, m.resets)
	return m
}
