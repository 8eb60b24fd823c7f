package generation

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// benchConfig is a config with one API-key authenticator reading keys and
// n allow rules, one per host and path.
func benchConfig(keys string, n int) string {
	var b strings.Builder
	b.WriteString("authenticators:\n  - name: keys\n    source: {header: x-api-key}\n    api_key: {file: \"" + keys + "\"}\npolicy:\n  rules:\n")
	for i := range n {
		fmt.Fprintf(&b, "    - name: r%d\n      match: {hosts: [svc%d.example.com], path: {prefix: /r/%d/}, methods: [GET]}\n      action: allow\n", i, i, i)
	}
	return b.String()
}

// BenchmarkPolicyLoad loads a config file with 10,000 rules (ns/op: read,
// decode, validate) and reports the heap the loaded config holds
// (loaded-B: with the node tree and the rules as configured) and what the
// service keeps once the policy is compiled (compiled-B).
func BenchmarkPolicyLoad(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "config.yaml")
	keys := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(keys, []byte("keys: []\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(benchConfig(keys, 10000)), 0o600); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(path, os.Getenv); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	heap := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	base := heap()
	cfg, err := Load(path, os.Getenv)
	if err != nil {
		b.Fatal(err)
	}
	loaded := heap() - base
	cfg.compiled()
	compiled := heap() - base
	runtime.KeepAlive(cfg)
	b.ReportMetric(float64(loaded), "loaded-B")
	b.ReportMetric(float64(compiled), "compiled-B")
}
