package assertion

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts assertions by how they were obtained. Labels hold fixed
// words only.
type metrics struct {
	cached, signed, failed prometheus.Counter
}

// newMetrics registers the series on reg, or returns nil without one.
// Minters of several generations share one registerer: the second reuses
// the first one's collector.
func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ext_authz_upstream_assertions_total",
		Help: "Upstream identity assertions attached to allowed requests, by result: cached (served from the cache), signed (a new signature), error (the request was refused).",
	}, []string{"result"})
	if err := reg.Register(vec); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				vec = existing
			}
		}
		// Otherwise count into the unregistered vector rather than fail.
	}
	return &metrics{cached: vec.WithLabelValues("cached"), signed: vec.WithLabelValues("signed"), failed: vec.WithLabelValues("error")}
}
