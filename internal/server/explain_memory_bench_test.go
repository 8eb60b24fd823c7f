package server

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// BenchmarkExplainPipelineMemory: the heap a compiled generation of
// 10,000 rules retains after a GC, with admin.explain off and on (every
// rule's matcher kept). Compare retained-MiB of the two in one run:
//
//	go test -run '^$' -bench ExplainPipelineMemory -benchtime 3x ./internal/server/
func BenchmarkExplainPipelineMemory(b *testing.B) {
	keys := servicetest.KeysFile(b, b.TempDir())
	path := filepath.Join(b.TempDir(), "config.yaml")
	servicetest.WriteFile(b, path, servicetest.BaseConfig(keys, manyRules(10000, "a")))
	for _, tt := range []struct {
		name    string
		explain bool
	}{{"off", false}, {"on", true}} {
		b.Run(tt.name, func(b *testing.B) {
			var retained float64
			for range b.N {
				cfg, err := generation.Load(path, func(string) string { return "" })
				if err != nil {
					b.Fatal(err)
				}
				g, err := generation.Compile(&generation.Env{Pool: pool.New(pool.Options{}), Explain: tt.explain}, cfg)
				if err != nil {
					b.Fatal(err)
				}
				cfg = nil //nolint:ineffassign,wastedassign // dropped so only g holds the policy
				var held, freed runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&held)
				if err := g.Release(); err != nil {
					b.Fatal(err)
				}
				g = nil //nolint:ineffassign,wastedassign // dropped to measure what it held
				runtime.GC()
				runtime.ReadMemStats(&freed)
				retained += float64(int64(held.HeapAlloc) - int64(freed.HeapAlloc))
			}
			b.ReportMetric(retained/float64(b.N)/(1<<20), "retained-MiB")
		})
	}
}
