//go:build !unix

package benchcpu

// processCPU: no process CPU clock here.
func processCPU() (int64, bool) { return 0, false }
