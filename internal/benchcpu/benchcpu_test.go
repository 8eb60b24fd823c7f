package benchcpu

import (
	"runtime"
	"testing"
)

// TestReportAddsMetric: a benchmark that burns CPU reports a positive
// cpu-ns/op where the platform has a process CPU clock.
func TestReportAddsMetric(t *testing.T) {
	if _, ok := processCPU(); !ok {
		t.Skipf("no process CPU clock on %s", runtime.GOOS)
	}
	r := testing.Benchmark(func(b *testing.B) {
		Report(b)
		x := 0
		for i := range b.N * 1000 {
			x += i % 7
		}
		_ = x
	})
	if got := r.Extra["cpu-ns/op"]; got <= 0 {
		t.Fatalf("cpu-ns/op = %v, want > 0 (extra %v)", got, r.Extra)
	}
}
