package tokens

import (
	"github.com/prometheus/client_golang/prometheus"
)

// counterValue returns the value of the counter or gauge name{labels...} in reg (label
// values in declaration order), 0 when absent.
func counterValue(reg prometheus.Gatherer, name string, values ...string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(values) {
				continue
			}
			// Labels are sorted by name in the exposition; compare as a set.
			want := map[string]bool{}
			for _, v := range values {
				want[v] = true
			}
			for _, l := range m.GetLabel() {
				if !want[l.GetValue()] {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
