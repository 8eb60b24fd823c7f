// Package benchcpu adds a CPU-time metric to Go benchmarks. On a machine
// shared with other work, ns/op counts time spent waiting for a core;
// the CPU time the process used per op is steadier. It imports the
// standard library only, so any package's benchmarks can use it.
package benchcpu

import "testing"

// Report adds cpu-ns/op to b: the CPU time the process used (every
// thread: the benchmark, the garbage collector's workers and assists) per
// op, from the call to the benchmark's end. Where the platform has no
// process CPU clock it adds nothing.
func Report(b *testing.B) {
	start, ok := processCPU()
	if !ok {
		return
	}
	b.Cleanup(func() {
		if end, ok := processCPU(); ok && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	})
}
