package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/internal/promreg"
)

// metrics are the limiter's series. Labels are fixed words: never a
// descriptor value, which may be a user id or a credential.
type metrics struct {
	checks  *prometheus.CounterVec   // code=ok|over_limit|failed_open|failed_closed
	results *prometheus.CounterVec   // result=ok|over_limit|shadow_over_limit|unlimited
	cached  prometheus.Counter       // over-limit answers from the local cache
	store   *prometheus.HistogramVec // outcome=ok|error|timeout

	// The children of results and store for their fixed labels, looked up
	// once (WithLabelValues hashes the label and takes a lock on every
	// call; these are counted for every descriptor of every check). A
	// child is still made on its first use, so the series appear as
	// before.
	resultChild [len(resultLabels)]atomic.Pointer[prometheus.Counter]
	storeChild  [len(storeLabels)]atomic.Pointer[prometheus.Observer]
}

var (
	resultLabels = [...]string{"ok", "over_limit", "shadow_over_limit", "unlimited"}
	storeLabels  = [...]string{"ok", "error", "timeout"}
)

// child returns the cached child of label i, making it with mk first.
func child[T any](p *atomic.Pointer[T], mk func() T) T {
	if c := p.Load(); c != nil {
		return *c
	}
	c := mk()
	p.Store(&c)
	return c
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_ratelimit_checks_total",
			Help: "Rate-limit checks by domain (configured domains; any other is \"other\") and outcome; failed_open and failed_closed are store failures.",
		}, []string{"domain", "code"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_ratelimit_descriptors_total",
			Help: "Descriptors that matched a limit, by result.",
		}, []string{"result"}),
		cached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ext_authz_ratelimit_local_cache_hits_total",
			Help: "Over-limit answers given from the local cache, without a store round trip.",
		}),
		store: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ext_authz_ratelimit_store_seconds",
			Help:    "Latency of one store round trip for a check.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1},
		}, []string{"outcome"}),
	}
	m.checks = register(reg, m.checks)
	m.results = register(reg, m.results)
	m.cached = register(reg, m.cached)
	m.store = register(reg, m.store)
	return m
}

// register registers c, or returns the collector already registered under
// its name (a second Limiter on one registry shares the series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	c, err := promreg.Register(reg, c)
	if err != nil {
		panic(fmt.Sprintf("ratelimit metrics: %v", err)) // a programming error: conflicting series
	}
	return c
}

func (m *metrics) check(domain, code string) {
	if m != nil {
		m.checks.WithLabelValues(domain, code).Inc()
	}
}

func (m *metrics) result(r string) {
	if m == nil {
		return
	}
	for i, l := range resultLabels {
		if l == r {
			child(&m.resultChild[i], func() prometheus.Counter { return m.results.WithLabelValues(r) }).Inc()
			return
		}
	}
	m.results.WithLabelValues(r).Inc()
}

func (m *metrics) localCacheHit() {
	if m != nil {
		m.cached.Inc()
	}
}

func (m *metrics) storeLatency(d time.Duration, err error) {
	if m == nil {
		return
	}
	i := 0 // ok
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		i = 2 // timeout
	case err != nil:
		i = 1 // error
	}
	child(&m.storeChild[i], func() prometheus.Observer { return m.store.WithLabelValues(storeLabels[i]) }).Observe(d.Seconds())
}
