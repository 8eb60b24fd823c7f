// Package promreg registers Prometheus collectors so that components built
// more than once over one registry (a verifier or limiter per configuration
// generation, several authenticators of one kind) share their series.
//
// It imports only the Prometheus client; every package may use it.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it, or returns the collector of
// the same type already registered under its descriptors. Any other error
// (a collector of another shape under the same name) is returned with c,
// for the caller to decide: a programming error, or counting into an
// unregistered collector rather than failing.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
