package authz

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkMatch is Pipeline.match with the index against the linear scan
// it replaced, with 10, 1,000 and 10,000 rules: a request that matches the
// second-last rule (a regex rule), and one that matches none (a configured
// host, an unknown path).
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		p := benchPipeline(b, n)
		for _, c := range benchCases(n) {
			for _, impl := range []string{"index", "linear"} {
				q := *p
				if impl == "linear" {
					q.index = nil
				}
				b.Run(impl+"/rules="+strconv.Itoa(n)+"/"+c.name, func(b *testing.B) {
					r := c.req
					if ru, _ := q.match(&r, nil); (ru != nil) != c.match {
						b.Fatalf("match %v, want %v", ru != nil, c.match)
					}
					b.ReportAllocs()
					for b.Loop() {
						q.match(&r, nil)
					}
				})
			}
		}
	}
}

// BenchmarkDecide is the whole decision for the same requests (an allow
// rule: no credential to verify), index against linear scan.
func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10, 1000, 10000} {
		p := benchPipeline(b, n)
		for _, c := range benchCases(n) {
			for _, impl := range []string{"index", "linear"} {
				q := *p
				if impl == "linear" {
					q.index = nil
				}
				b.Run(impl+"/rules="+strconv.Itoa(n)+"/"+c.name, func(b *testing.B) {
					r := c.req
					if d := q.Decide(ctx, &r); (d.Code == OK) != c.match {
						b.Fatalf("decision %v %s, want a match: %v", d.Code, d.Reason, c.match)
					}
					b.ReportAllocs()
					for b.Loop() {
						r := c.req
						q.Decide(ctx, &r)
					}
				})
			}
		}
	}
}

type benchCase struct {
	name  string
	req   Request
	match bool
}

func benchCases(n int) []benchCase {
	last := n/10 - 1
	host := benchHost(last)
	if host[0] == '*' {
		host = "a" + host[1:]
	}
	return []benchCase{
		{"near-end", Request{Host: host, Path: "/r" + strconv.Itoa(n-2) + "/items/42", Method: "GET", Headers: map[string]string{}}, true},
		{"no-match", Request{Host: host, Path: "/nothing/here", Method: "GET", Headers: map[string]string{}}, false},
	}
}
