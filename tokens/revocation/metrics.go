package revocation

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/internal/promreg"
)

// metrics are the List's series; labels are fixed words only.
type metrics struct {
	records    *prometheus.GaugeVec   // kind
	maxRecords prometheus.Gauge       //
	overflow   prometheus.Gauge       // 1 while over max_records
	stale      prometheus.Gauge       // 1 while the log is unread past max_staleness
	lastSync   prometheus.Gauge       // unix time of the last up-to-date read
	decisions  *prometheus.CounterVec // path=memory|lookup, result
	resyncs    *prometheus.CounterVec // reason=start|gap|overflow
	errors     prometheus.Counter
	applied    prometheus.Counter
	dropped    *prometheus.CounterVec // reason=over_max_records|invalid
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	return &metrics{
		records: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ext_authz_revocation_records",
			Help: "Revocation records held in memory, by kind (jti, sid, ticket, session, api-key, subject).",
		}, []string{"kind"})),
		maxRecords: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ext_authz_revocation_max_records",
			Help: "The bound on revocation records held in memory (revocation.max_records).",
		})),
		overflow: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ext_authz_revocation_overflow",
			Help: "1 while the revocation records outgrow max_records: every Check then asks Redis.",
		})),
		stale: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ext_authz_revocation_stale",
			Help: "1 while the revocation log has not been read for longer than max_staleness: every Check then asks Redis.",
		})),
		lastSync: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ext_authz_revocation_last_sync_timestamp_seconds",
			Help: "Unix time as of which the in-memory revocations were last known complete; alert when it grows old.",
		})),
		decisions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_revocation_checks_total",
			Help: "Revocation checks answered from memory (path=memory, counted only when revoked) or by a Redis lookup (path=lookup), by result (revoked, accepted, error).",
		}, []string{"path", "result"})),
		resyncs: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_revocation_resyncs_total",
			Help: "Full reloads of the revocation records, by reason (start, gap: the log was trimmed past this replica's position, overflow).",
		}, []string{"reason"})),
		errors: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ext_authz_revocation_log_errors_total",
			Help: "Failed reads of the revocation log or records (each retried from the last position).",
		})),
		applied: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ext_authz_revocation_log_records_total",
			Help: "Revocation records read from the log.",
		})),
		dropped: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_revocation_records_dropped_total",
			Help: "Revocation records not held in memory, by reason (over_max_records, invalid).",
		}, []string{"reason"})),
	}
}

// register shares the series of an earlier list on the same registry; a
// conflicting collector counts unregistered rather than fail the list.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	c, _ = promreg.Register(reg, c)
	return c
}

func (m *metrics) setMax(n int) {
	if m != nil {
		m.maxRecords.Set(float64(n))
	}
}

func (m *metrics) setRecords(k Kind, n int64) {
	if m != nil {
		m.records.WithLabelValues(k.String()).Set(float64(n))
	}
}

func (m *metrics) setOverflow(on bool) {
	if m != nil {
		m.overflow.Set(b2f(on))
	}
}

func (m *metrics) setStale(on bool) {
	if m != nil {
		m.stale.Set(b2f(on))
	}
}

func (m *metrics) setSynced(t time.Time) {
	if m != nil {
		m.lastSync.Set(float64(t.UnixNano()) / 1e9)
	}
}

func (m *metrics) decision(path, result string) {
	if m != nil {
		m.decisions.WithLabelValues(path, result).Inc()
	}
}

func (m *metrics) resync(reason string) {
	if m != nil {
		m.resyncs.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) readError() {
	if m != nil {
		m.errors.Inc()
	}
}

func (m *metrics) read(n int) {
	if m != nil && n > 0 {
		m.applied.Add(float64(n))
	}
}

func (m *metrics) drop() {
	if m != nil {
		m.dropped.WithLabelValues("over_max_records").Inc()
	}
}

func (m *metrics) invalid() {
	if m != nil {
		m.dropped.WithLabelValues("invalid").Inc()
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
