package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterShares(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "promreg_test_total", Help: "h"}
	first, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	second.Inc()
	if first != second {
		t.Fatal("a second registration did not return the registered collector")
	}
	// Another shape under the same name is an error, with c returned.
	other := prometheus.NewGauge(prometheus.GaugeOpts{Name: "promreg_test_total", Help: "h"})
	got, err := Register(reg, other)
	if err == nil || got != other {
		t.Fatalf("conflicting collector: got %v, err %v", got, err)
	}
}
