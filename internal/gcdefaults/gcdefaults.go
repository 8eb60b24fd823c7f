// Package gcdefaults chooses the service's garbage collector settings at
// start-up when the operator has not: a higher GOGC than Go's 100, bounded
// by a memory limit derived from the container's cgroup. cmd/ext-authz
// calls Apply before it loads the config, so loading a large key file runs
// under the same bound.
//
// Why: the Check path allocates a few KiB per request (most of it inside
// grpc-go and HTTP/2) against a live heap of a few tens of MiB, so with
// GOGC=100 the collector runs many times a second; under the load test it
// took ~15 % of the server's CPU. GOGC=400 lets the heap grow to five times
// the live heap between cycles: a quarter of the cycles for the same work
// (loadtest/RESULTS.md measures it). The memory limit keeps that from ever
// outgrowing the container: near the limit the collector runs as often as
// it must, whatever GOGC says (Go's GOMEMLIMIT semantics).
//
// An operator's GOGC or GOMEMLIMIT is always kept as given; the Go runtime
// has already applied it. It imports only the standard library.
package gcdefaults

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the GOGC used when the environment sets none.
const DefaultGCPercent = 400

// LimitFraction is the share of the cgroup memory limit given to the Go
// runtime as its memory limit when the environment sets no GOMEMLIMIT: the
// rest is headroom for what the runtime does not count (the binary's text,
// kernel buffers, fragmentation). 256 MiB gives 230.4 MiB, what the
// Deployment sets explicitly.
const LimitFraction = 0.9

// Settings are the collector settings chosen, and where each came from.
type Settings struct {
	// GCPercent is the GOGC in effect after Apply (negative: off). Plan
	// cannot know an operator's value and leaves it -1; Apply reads it.
	GCPercent int
	// GCPercentSource is "GOGC" (the operator's) or "default".
	GCPercentSource string
	// MemoryLimit is the memory limit in effect in bytes after Apply;
	// math.MaxInt64 is none. Plan leaves an operator's -1, as GCPercent.
	MemoryLimit int64
	// MemoryLimitSource is "GOMEMLIMIT" (the operator's), "cgroup" (a
	// fraction of CgroupLimit) or "none".
	MemoryLimitSource string
	// CgroupLimit is the cgroup's memory limit in bytes, 0 when there is
	// none or it could not be read (then CgroupError says why, if it was
	// an error rather than no limit).
	CgroupLimit int64
	CgroupError error
}

// Options are where Plan reads from; the zero value reads the process's
// environment and the real /proc and /sys.
type Options struct {
	// Getenv reads an environment variable (os.Getenv when nil).
	Getenv func(string) string
	// ReadFile reads a file (os.ReadFile when nil): /proc/self/cgroup and
	// the cgroup's memory limit file.
	ReadFile func(string) ([]byte, error)
}

// Plan decides the settings without applying them.
func Plan(opts Options) Settings {
	getenv, readFile := opts.Getenv, opts.ReadFile
	if getenv == nil {
		getenv = os.Getenv
	}
	if readFile == nil {
		readFile = os.ReadFile
	}
	s := Settings{GCPercent: DefaultGCPercent, GCPercentSource: "default", MemoryLimit: math.MaxInt64, MemoryLimitSource: "none"}
	if getenv("GOGC") != "" {
		// The runtime parsed it already; -1 asks it for the value in force.
		s.GCPercent, s.GCPercentSource = -1, "GOGC"
	}
	s.CgroupLimit, s.CgroupError = CgroupMemoryLimit(readFile)
	if getenv("GOMEMLIMIT") != "" {
		s.MemoryLimit, s.MemoryLimitSource = -1, "GOMEMLIMIT"
	} else if s.CgroupLimit > 0 {
		s.MemoryLimit, s.MemoryLimitSource = int64(float64(s.CgroupLimit)*LimitFraction), "cgroup"
	}
	return s
}

// Apply plans the settings and applies those that are not the operator's.
// The returned Settings hold the values in effect afterwards.
func Apply(opts Options) Settings {
	s := Plan(opts)
	if s.GCPercentSource == "default" {
		debug.SetGCPercent(s.GCPercent)
	} else {
		// Reading GOGC means setting it: set it back to what it was.
		s.GCPercent = debug.SetGCPercent(100)
		debug.SetGCPercent(s.GCPercent)
	}
	if s.MemoryLimitSource == "cgroup" {
		debug.SetMemoryLimit(s.MemoryLimit)
	} else {
		s.MemoryLimit = debug.SetMemoryLimit(-1) // a negative value only reads it
	}
	return s
}

// LogAttrs are the settings as slog key-value pairs, for the start-up log.
func (s Settings) LogAttrs() []any {
	limit := "none"
	if s.MemoryLimit != math.MaxInt64 {
		limit = strconv.FormatInt(s.MemoryLimit>>20, 10) + "MiB"
	}
	attrs := []any{"gogc", s.GCPercent, "gogc_source", s.GCPercentSource, "memory_limit", limit, "memory_limit_source", s.MemoryLimitSource}
	if s.CgroupLimit > 0 {
		attrs = append(attrs, "cgroup_memory_limit", strconv.FormatInt(s.CgroupLimit>>20, 10)+"MiB")
	}
	if s.CgroupError != nil {
		attrs = append(attrs, "cgroup_error", s.CgroupError.Error())
	}
	return attrs
}

// noLimit is the smallest value cgroup v1 reports as "unlimited" is above:
// it reports the largest multiple of the page size (9223372036854771712),
// and nobody limits a container to 4 EiB.
const noLimit = int64(1) << 62

// CgroupMemoryLimit returns the memory limit of this process's cgroup in
// bytes, 0 when it has none. It reads cgroup v2's memory.max or cgroup v1's
// memory.limit_in_bytes of the cgroup named in /proc/self/cgroup under
// /sys/fs/cgroup, and falls back to the file at the cgroup mount's root,
// which is the container's own cgroup when the container has a cgroup
// namespace (the usual case in Kubernetes). An error means a limit file was
// found but could not be understood; no cgroup files at all is no limit.
func CgroupMemoryLimit(readFile func(string) ([]byte, error)) (int64, error) {
	self, err := readFile("/proc/self/cgroup")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("cgroup memory limit: %w", err)
	}
	var candidates []string
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		controllers, cgPath, ok := strings.Cut(rest, ":")
		if !ok || !path.IsAbs(cgPath) {
			continue
		}
		switch {
		case id == "0" && controllers == "":
			candidates = append(candidates, path.Join("/sys/fs/cgroup", cgPath, "memory.max"), "/sys/fs/cgroup/memory.max")
		case hasController(controllers, "memory"):
			candidates = append(candidates, path.Join("/sys/fs/cgroup/memory", cgPath, "memory.limit_in_bytes"),
				"/sys/fs/cgroup/memory/memory.limit_in_bytes")
		}
	}
	for _, f := range candidates {
		b, err := readFile(f)
		if err != nil {
			continue // not this hierarchy, or not mounted here
		}
		return parseLimit(f, b)
	}
	return 0, nil
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// parseLimit reads a memory limit file: a byte count, or "max" (v2) or a
// number at least noLimit (v1) for none.
func parseLimit(file string, b []byte) (int64, error) {
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("cgroup memory limit %s: %q is not a positive byte count", file, v)
	}
	if n >= noLimit {
		return 0, nil
	}
	return n, nil
}
