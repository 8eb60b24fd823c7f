package gcdefaults

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// files is a fake file system for ReadFile.
type files map[string]string

func (f files) read(name string) ([]byte, error) {
	s, ok := f[name]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
	}
	return []byte(s), nil
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

const mib = 1 << 20

func TestCgroupMemoryLimit(t *testing.T) {
	tests := []struct {
		name    string
		give    files
		want    int64
		wantErr bool
	}{
		{name: "v2 with a namespace (Kubernetes)", give: files{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "268435456\n"}, want: 256 * mib},
		{name: "v2 without a namespace: the process's own cgroup", give: files{
			"/proc/self/cgroup":                            "0::/kubepods/pod1/ctr\n",
			"/sys/fs/cgroup/kubepods/pod1/ctr/memory.max":  "134217728\n",
			"/sys/fs/cgroup/memory.max":                    "max\n",
			"/sys/fs/cgroup/kubepods/pod1/memory.max":      "1\n",
			"/sys/fs/cgroup/kubepods/pod1/ctr/memory.high": "1\n",
		}, want: 128 * mib},
		{name: "v2 own cgroup not mounted there: the mount's root", give: files{"/proc/self/cgroup": "0::/elsewhere\n", "/sys/fs/cgroup/memory.max": "268435456"}, want: 256 * mib},
		{name: "v2 no limit", give: files{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "max\n"}},
		{name: "v1 with a limit", give: files{
			"/proc/self/cgroup": "12:pids:/x\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n",
			"/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "536870912\n",
		}, want: 512 * mib},
		{name: "v1 combined controllers", give: files{
			"/proc/self/cgroup":                             "4:cpu,memory:/p\n",
			"/sys/fs/cgroup/memory/p/memory.limit_in_bytes": "268435456\n",
		}, want: 256 * mib},
		{name: "v1 with a namespace: the mount's root", give: files{
			"/proc/self/cgroup":                           "4:memory:/docker/abc\n",
			"/sys/fs/cgroup/memory/memory.limit_in_bytes": "268435456\n",
		}, want: 256 * mib},
		{name: "v1 unlimited (the largest page multiple)", give: files{
			"/proc/self/cgroup":                           "4:memory:/\n",
			"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}},
		{name: "hybrid: v1 memory wins over the unified line", give: files{
			"/proc/self/cgroup":                             "4:memory:/a\n0::/b\n",
			"/sys/fs/cgroup/memory/a/memory.limit_in_bytes": "268435456\n",
			"/sys/fs/cgroup/b/memory.max":                   "134217728\n",
		}, want: 256 * mib},
		{name: "no /proc (not Linux)", give: files{}},
		{name: "no memory controller", give: files{"/proc/self/cgroup": "3:cpu:/x\n"}},
		{name: "no limit file anywhere", give: files{"/proc/self/cgroup": "0::/\n"}},
		{name: "garbage lines are skipped", give: files{"/proc/self/cgroup": "nonsense\n1:memory\n2:memory:relative\n0::/\n", "/sys/fs/cgroup/memory.max": "1048576"}, want: mib},
		{name: "unreadable limit", give: files{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "lots\n"}, wantErr: true},
		{name: "zero limit", give: files{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "0\n"}, wantErr: true},
		{name: "negative limit", give: files{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "-5\n"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CgroupMemoryLimit(tt.give.read)
			if (err != nil) != tt.wantErr {
				t.Fatalf("CgroupMemoryLimit() error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("CgroupMemoryLimit() = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestCgroupMemoryLimitProcError: a /proc/self/cgroup that exists but
// cannot be read is an error, not "no limit" in silence.
func TestCgroupMemoryLimitProcError(t *testing.T) {
	denied := func(string) ([]byte, error) { return nil, fs.ErrPermission }
	if _, err := CgroupMemoryLimit(denied); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("error = %v, want ErrPermission", err)
	}
}

// TestCgroupMemoryLimitHere reads this machine's cgroup: whatever it is,
// it must be understood.
func TestCgroupMemoryLimitHere(t *testing.T) {
	n, err := CgroupMemoryLimit(os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	if n < 0 {
		t.Fatalf("limit %d", n)
	}
	t.Logf("cgroup memory limit here: %d", n)
}

func TestPlan(t *testing.T) {
	limited := files{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "268435456\n"}
	tests := []struct {
		name                 string
		env                  map[string]string
		files                files
		wantGC               int
		wantGCSource         string
		wantLimit            int64
		wantLimitSource      string
		wantCgroup           int64
		wantCgroupErr        bool
		wantAttrLimit        string
		wantAttrCgroupLimit  bool
		wantAttrCgroupErrors bool
	}{
		{name: "nothing set, 256 MiB container: GOGC 400 under 230.4 MiB", files: limited,
			wantGC: 400, wantGCSource: "default", wantLimit: 241591910, wantLimitSource: "cgroup", wantCgroup: 256 * mib,
			wantAttrLimit: "230MiB", wantAttrCgroupLimit: true},
		{name: "nothing set, no container limit: GOGC 400 alone", files: files{},
			wantGC: 400, wantGCSource: "default", wantLimit: math.MaxInt64, wantLimitSource: "none", wantAttrLimit: "none"},
		{name: "operator's GOMEMLIMIT is kept", env: map[string]string{"GOMEMLIMIT": "100MiB"}, files: limited,
			wantGC: 400, wantGCSource: "default", wantLimit: -1, wantLimitSource: "GOMEMLIMIT", wantCgroup: 256 * mib, wantAttrCgroupLimit: true},
		{name: "operator's GOGC is kept, limit still derived", env: map[string]string{"GOGC": "100"}, files: limited,
			wantGC: -1, wantGCSource: "GOGC", wantLimit: 241591910, wantLimitSource: "cgroup", wantCgroup: 256 * mib,
			wantAttrLimit: "230MiB", wantAttrCgroupLimit: true},
		{name: "GOGC=off: the cgroup still bounds the heap", env: map[string]string{"GOGC": "off"}, files: limited,
			wantGC: -1, wantGCSource: "GOGC", wantLimit: 241591910, wantLimitSource: "cgroup", wantCgroup: 256 * mib,
			wantAttrLimit: "230MiB", wantAttrCgroupLimit: true},
		{name: "both set: nothing of ours", env: map[string]string{"GOGC": "50", "GOMEMLIMIT": "1GiB"}, files: limited,
			wantGC: -1, wantGCSource: "GOGC", wantLimit: -1, wantLimitSource: "GOMEMLIMIT", wantCgroup: 256 * mib, wantAttrCgroupLimit: true},
		{name: "unreadable cgroup limit: no limit, the error reported", files: files{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "x"},
			wantGC: 400, wantGCSource: "default", wantLimit: math.MaxInt64, wantLimitSource: "none", wantCgroupErr: true,
			wantAttrLimit: "none", wantAttrCgroupErrors: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Plan(Options{Getenv: env(tt.env), ReadFile: tt.files.read})
			if s.GCPercent != tt.wantGC || s.GCPercentSource != tt.wantGCSource {
				t.Errorf("GC percent = %d (%s), want %d (%s)", s.GCPercent, s.GCPercentSource, tt.wantGC, tt.wantGCSource)
			}
			if s.MemoryLimit != tt.wantLimit || s.MemoryLimitSource != tt.wantLimitSource {
				t.Errorf("memory limit = %d (%s), want %d (%s)", s.MemoryLimit, s.MemoryLimitSource, tt.wantLimit, tt.wantLimitSource)
			}
			if s.CgroupLimit != tt.wantCgroup || (s.CgroupError != nil) != tt.wantCgroupErr {
				t.Errorf("cgroup = %d, %v; want %d, error %v", s.CgroupLimit, s.CgroupError, tt.wantCgroup, tt.wantCgroupErr)
			}
			attrs := map[string]any{}
			kv := s.LogAttrs()
			for i := 0; i+1 < len(kv); i += 2 {
				attrs[kv[i].(string)] = kv[i+1]
			}
			if tt.wantAttrLimit != "" && attrs["memory_limit"] != tt.wantAttrLimit {
				t.Errorf("memory_limit attr = %v, want %s", attrs["memory_limit"], tt.wantAttrLimit)
			}
			if _, ok := attrs["cgroup_memory_limit"]; ok != tt.wantAttrCgroupLimit {
				t.Errorf("cgroup_memory_limit attr present = %v, want %v", ok, tt.wantAttrCgroupLimit)
			}
			if _, ok := attrs["cgroup_error"]; ok != tt.wantAttrCgroupErrors {
				t.Errorf("cgroup_error attr present = %v, want %v", ok, tt.wantAttrCgroupErrors)
			}
		})
	}
}

// TestApply applies to this process's runtime and reads the values back;
// the test restores Go's values afterwards.
func TestApply(t *testing.T) {
	oldGC := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(oldGC)
		debug.SetMemoryLimit(oldLimit)
	})
	limited := files{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "268435456\n"}

	s := Apply(Options{Getenv: env(nil), ReadFile: limited.read})
	if got := gcPercent(); got != DefaultGCPercent || s.GCPercent != DefaultGCPercent {
		t.Errorf("GC percent in effect %d, reported %d; want %d", got, s.GCPercent, DefaultGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != 241591910 || s.MemoryLimit != got {
		t.Errorf("memory limit in effect %d, reported %d; want 241591910", got, s.MemoryLimit)
	}

	// The operator's values (here: what the runtime holds) are left alone
	// and reported as they are.
	debug.SetGCPercent(150)
	debug.SetMemoryLimit(300 * mib)
	s = Apply(Options{Getenv: env(map[string]string{"GOGC": "150", "GOMEMLIMIT": "300MiB"}), ReadFile: limited.read})
	if got := gcPercent(); got != 150 || s.GCPercent != 150 {
		t.Errorf("GC percent in effect %d, reported %d; want 150 kept", got, s.GCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != 300*mib || s.MemoryLimit != 300*mib {
		t.Errorf("memory limit in effect %d, reported %d; want 300 MiB kept", got, s.MemoryLimit)
	}
}

// gcPercent reads the GC percent in effect (setting it is the only way).
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// FuzzCgroupMemoryLimit: whatever /proc/self/cgroup and the limit file
// hold, the reader answers without panicking, never with a negative
// limit, and a plain positive byte count below "unlimited" is read as
// itself.
func FuzzCgroupMemoryLimit(f *testing.F) {
	f.Add("0::/\n", "268435456\n")
	f.Add("0::/a/b\n", "max\n")
	f.Add("4:memory:/docker/x\n0::/\n", "9223372036854771712\n")
	f.Add("4:cpu,memory:/\n", " 1048576 ")
	f.Add("garbage", "-1")
	f.Add("0::relative\n", "0x10")
	f.Fuzz(func(t *testing.T, self, limit string) {
		fake := files{"/proc/self/cgroup": self, "/sys/fs/cgroup/memory.max": limit, "/sys/fs/cgroup/memory/memory.limit_in_bytes": limit}
		n, err := CgroupMemoryLimit(fake.read)
		if n < 0 {
			t.Fatalf("negative limit %d", n)
		}
		if err != nil && n != 0 {
			t.Fatalf("limit %d with error %v", n, err)
		}
		v := strings.TrimSpace(limit)
		if want, perr := strconv.ParseInt(v, 10, 64); perr == nil && want > 0 && want < noLimit && n != 0 && n != want {
			t.Fatalf("limit file %q read as %d", limit, n)
		}
	})
}
