package authz

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"github.com/ext-authz/ext-authz/internal/benchcpu"
)

// benchConfig is a gateway policy of n rules: ten per host (a few hosts
// are "*.domain" wildcards), with prefix, exact and regex paths and some
// method conditions, in the proportions a large route table has.
func benchConfig(n int) Config {
	cfg := Config{Rules: make([]RuleConfig, 0, n)}
	for i := range n {
		rc := RuleConfig{Name: "r" + strconv.Itoa(i), Action: ActionAllow}
		rc.Match.Hosts = []string{benchHost(i / 10)}
		switch i % 10 {
		case 0, 1, 2, 3, 4:
			rc.Match.Path.Prefix = fmt.Sprintf("/api/v%d/r%d/", i%10, i)
		case 5, 6, 7:
			rc.Match.Path.Exact = fmt.Sprintf("/r%d/health", i)
		case 8:
			rc.Match.Path.Regex = fmt.Sprintf("/r%d/items/[0-9]+", i)
		case 9:
			rc.Match.Path.Prefix = fmt.Sprintf("/r%d", i)
			rc.Match.Methods = []string{"POST"}
		}
		if i%3 == 0 && i%10 != 9 {
			rc.Match.Methods = []string{"GET", "HEAD"}
		}
		cfg.Rules = append(cfg.Rules, rc)
	}
	return cfg
}

// benchHost is the host of rule group k: every 50th is a wildcard.
func benchHost(k int) string {
	if k%50 == 49 {
		return fmt.Sprintf("*.t%d.example.org", k)
	}
	return fmt.Sprintf("svc%d.example.com", k)
}

// benchRequest is a request rule i matches (when method allows), or, for
// i beyond the rules, one that matches none.
func benchRequest(n, i int, rnd *rand.Rand) *Request {
	if i >= n {
		hosts := []string{"unknown.example.net", benchRequestHost(rnd.IntN(max(n/10, 1)), rnd)}
		return &Request{Host: hosts[rnd.IntN(2)], Path: "/nothing/" + strconv.Itoa(i), Method: "GET"}
	}
	r := &Request{Host: benchRequestHost(i/10, rnd), Method: []string{"GET", "POST", "PUT"}[rnd.IntN(3)]}
	switch i % 10 {
	case 0, 1, 2, 3, 4:
		r.Path = fmt.Sprintf("/api/v%d/r%d/x%d", i%10, i, rnd.IntN(5))
	case 5, 6, 7:
		r.Path = fmt.Sprintf("/r%d/health%s", i, []string{"", "", "z"}[rnd.IntN(3)])
	case 8:
		r.Path = fmt.Sprintf("/r%d/items/%s", i, []string{"1", "42", "x"}[rnd.IntN(3)])
	case 9:
		r.Path = fmt.Sprintf("/r%d%s", i, []string{"", "/a", "0"}[rnd.IntN(3)])
	}
	return r
}

func benchRequestHost(k int, rnd *rand.Rand) string {
	h := benchHost(k)
	if h[0] == '*' {
		return []string{"a", "b.c"}[rnd.IntN(2)] + h[1:]
	}
	return h
}

func benchPipeline(tb testing.TB, n int) *Pipeline {
	tb.Helper()
	p, err := NewPipeline(benchConfig(n), nil, Options{NewID: func() string { return "id" }})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// benchMatchers is the compiled matchers of benchConfig(n), in order.
func benchMatchers(tb testing.TB, n int) []*matcher {
	tb.Helper()
	cfg := benchConfig(n)
	out := make([]*matcher, len(cfg.Rules))
	for i := range cfg.Rules {
		m, err := compileMatch(&cfg.Rules[i].Match)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = m
	}
	return out
}

// BenchmarkNewPipeline is start-up: compiling the policy (ns/op, B/op
// allocated while compiling) and the heap the compiled pipeline keeps
// (retained-B, in retained-objects objects: what every GC cycle marks). It uses only what NewPipeline had before the index, so it
// runs unchanged on the previous commit for a before/after.
func BenchmarkNewPipeline(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run("rules="+strconv.Itoa(n), func(b *testing.B) {
			compileEach(b, n)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			p, err := NewPipeline(benchConfig(n), nil, Options{})
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(p)
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)), "retained-B")
			b.ReportMetric(float64(int64(after.HeapObjects)-int64(before.HeapObjects)), "retained-objects")
		})
	}
}

// compileEach times NewPipeline on b.N fresh copies of the n-rule policy.
func compileEach(b *testing.B, n int) {
	cfgs := make([]Config, b.N)
	for i := range cfgs {
		cfgs[i] = benchConfig(n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	benchcpu.Report(b)
	for i := range b.N {
		if _, err := NewPipeline(cfgs[i], nil, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}
