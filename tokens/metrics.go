package tokens

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/internal/promreg"
)

// metrics are the series this package exports. Labels hold only fixed words
// and configured issuer names: never a credential, subject or address.
type metrics struct {
	cache    *prometheus.CounterVec // kind, result=hit|miss
	jwks     *prometheus.CounterVec // issuer, result=ok|error
	jwksLast *prometheus.GaugeVec   // issuer: unix time of the last good fetch
	disc     *prometheus.CounterVec // issuer, result=ok|error
	sessions *prometheus.CounterVec // result
}

// newMetrics registers the series on reg, or returns nil (no metrics) when
// reg is nil. Several verifiers may share one registerer: the second one to
// register reuses the first one's collectors.
func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	return &metrics{
		cache: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_token_cache_requests_total",
			Help: "Lookups in the verified-credential cache, by verifier kind and result (hit, miss).",
		}, []string{"kind", "result"})),
		jwks: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_jwks_refreshes_total",
			Help: "JWKS fetches, by configured issuer and result (ok, error).",
		}, []string{"issuer", "result"})),
		jwksLast: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ext_authz_jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last JWKS fetch that yielded a usable key set, by issuer; alert when it grows old.",
		}, []string{"issuer"})),
		disc: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_oidc_discovery_fetches_total",
			Help: "OpenID Connect discovery document fetches, by configured issuer and result (ok, error).",
		}, []string{"issuer", "result"})),
		sessions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_session_lookups_total",
			Help: "UDB session store lookups (cache misses only), by result (found, missing, revoked, expired, invalid, error); stale counts answers served by stale_if_error while the store failed.",
		}, []string{"result"})),
	}
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	// A conflicting collector of another shape: count into an
	// unregistered one rather than fail the verifier.
	c, _ = promreg.Register(reg, c)
	return c
}

// cacheCounters are the pre-resolved hit/miss counters of one verifier kind,
// so the hot path does no label lookup.
type cacheCounters struct {
	hit, miss prometheus.Counter
}

func (m *metrics) cacheCounters(kind string) cacheCounters {
	if m == nil {
		return cacheCounters{}
	}
	return cacheCounters{hit: m.cache.WithLabelValues(kind, "hit"), miss: m.cache.WithLabelValues(kind, "miss")}
}

func (c cacheCounters) observe(hit bool) {
	switch {
	case c.hit == nil:
	case hit:
		c.hit.Inc()
	default:
		c.miss.Inc()
	}
}

func (m *metrics) jwksRefresh(issuer string, err error, now time.Time) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	} else {
		m.jwksLast.WithLabelValues(issuer).Set(float64(now.Unix()))
	}
	m.jwks.WithLabelValues(issuer, result).Inc()
}

func (m *metrics) discoveryFetch(issuer string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.disc.WithLabelValues(issuer, result).Inc()
}

func (m *metrics) session(result string) {
	if m == nil {
		return
	}
	m.sessions.WithLabelValues(result).Inc()
}
