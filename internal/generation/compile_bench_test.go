package generation

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/pool"
)

// BenchmarkCompilePolicy is the compile step serve, reload and check-config
// run (Compile) over a config of 2,000 rules with path regexes, the load
// excluded: the cost of compiling the policy, which is done once.
func BenchmarkCompilePolicy(b *testing.B) {
	dir := b.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(keys, []byte("keys: []\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString("authenticators:\n  - name: keys\n    source: {header: x-api-key}\n    api_key: {file: \"" + keys + "\"}\npolicy:\n  rules:\n")
	for i := range 2000 {
		fmt.Fprintf(&sb, "    - name: r%d\n      match: {hosts: [svc%d.example.com], path: {regex: \"/r/%d/(items|orders)/[0-9]+(/[a-z]+)?\"}}\n      action: allow\n", i, i, i)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	env := &Env{Pool: pool.New(pool.Options{})}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cfg, err := Load(path, os.Getenv)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		g, err := Compile(env, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = g.Release()
		b.StartTimer()
	}
}
