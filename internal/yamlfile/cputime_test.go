//go:build unix

package yamlfile

import (
	"syscall"
	"testing"
)

// reportCPU adds cpu-ns/op to a benchmark: the CPU time the process used
// (every thread: the benchmark, the garbage collector's workers and
// assists) per op, from before the call to the benchmark's end. On a
// shared machine this is steadier than ns/op, which counts time spent
// waiting for a core.
func reportCPU(b *testing.B) {
	start := processCPU()
	b.Cleanup(func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		}
	})
}

func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
