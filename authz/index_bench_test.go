package authz

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/ext-authz/ext-authz/internal/benchcpu"
)

// BenchmarkMatch is Pipeline.match with the index against the linear scan
// it replaced, with 10, 1,000 and 10,000 rules: a request that matches the
// second-last rule (a regex rule); one that matches none (a configured
// host, an unknown path); and "spread", 1,024 different requests for rules
// all over the policy and misses, taken in turn, so the larger tables'
// cache misses count.
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		p := benchPipeline(b, n)
		ms := benchMatchers(b, n)
		for _, c := range benchCases(n) {
			for _, impl := range []string{"index", "linear"} {
				q := *p
				if impl == "linear" {
					q.linear = ms
				}
				b.Run(impl+"/rules="+strconv.Itoa(n)+"/"+c.name, func(b *testing.B) {
					reqs := c.reqs()
					if ru, _ := q.match(&reqs[0], nil, &matchState{errPos: -1}); c.match != nil && (ru >= 0) != *c.match {
						b.Fatalf("match %v, want %v", ru >= 0, *c.match)
					}
					b.ReportAllocs()
					benchcpu.Report(b)
					i := 0
					for b.Loop() {
						q.match(&reqs[i%len(reqs)], nil, &matchState{errPos: -1})
						i++
					}
				})
			}
		}
	}
}

// BenchmarkDecide is the whole decision for the same requests (allow
// rules: no credential to verify), index against linear scan.
func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10, 1000, 10000} {
		p := benchPipeline(b, n)
		ms := benchMatchers(b, n)
		for _, c := range benchCases(n) {
			for _, impl := range []string{"index", "linear"} {
				q := *p
				if impl == "linear" {
					q.linear = ms
				}
				b.Run(impl+"/rules="+strconv.Itoa(n)+"/"+c.name, func(b *testing.B) {
					reqs := c.reqs()
					r := reqs[0]
					if d := q.Decide(ctx, &r); c.match != nil && (d.Code == OK) != *c.match {
						b.Fatalf("decision %v %s, want a match: %v", d.Code, d.Reason, *c.match)
					}
					b.ReportAllocs()
					benchcpu.Report(b)
					i := 0
					for b.Loop() {
						r := reqs[i%len(reqs)] // Decide canonicalises in place
						q.Decide(ctx, &r)
						i++
					}
				})
			}
		}
	}
}

type benchCase struct {
	name  string
	reqs  func() []Request
	match *bool // nil: some requests match, some not
}

func benchCases(n int) []benchCase {
	last := n/10 - 1
	host := benchHost(last)
	if host[0] == '*' {
		host = "a" + host[1:]
	}
	yes, no := true, false
	one := func(path string) func() []Request {
		return func() []Request {
			return []Request{{Host: host, Path: path, Method: "GET", Headers: map[string]string{}}}
		}
	}
	return []benchCase{
		{"near-end", one("/r" + strconv.Itoa(n-2) + "/items/42"), &yes},
		{"no-match", one("/nothing/here"), &no},
		{"spread", func() []Request {
			rnd := rand.New(rand.NewPCG(uint64(n), 7))
			out := make([]Request, 1024)
			for i := range out {
				out[i] = *benchRequest(n, rnd.IntN(n+n/4), rnd)
				out[i].Headers = map[string]string{}
			}
			return out
		}, nil},
	}
}
