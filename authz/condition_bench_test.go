package authz_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/benchcpu"
)

// benchConditions are typical requirement conditions, all true for alice's
// requests in BenchmarkDecideConditions.
var benchConditions = []string{
	"request.headers['x-team'] == principal.claims.team",
	"principal.scopes.exists(s, s == 'read')",
	"ip(request.client_address).in_cidr('192.0.2.0/24')",
	"request.method in ['GET', 'HEAD']",
	"request.path.startsWith('/api/') && !request.path.contains('..')",
}

// BenchmarkDecideConditions is the Check path of an authenticated rule
// with 0, 1 and 5 when conditions (the ratios are the cost of
// conditions), and with the same 5 as match.when conditions on the
// rule, which the index evaluates while matching.
func BenchmarkDecideConditions(b *testing.B) {
	for _, bc := range []struct {
		name  string
		n     int
		match bool
	}{{"when=0", 0, false}, {"when=1", 1, false}, {"when=5", 5, false}, {"match.when=3", 3, true}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testPolicy()
			for i := range cfg.Rules {
				if cfg.Rules[i].Name != "api" {
					continue
				}
				if bc.match {
					// Only those over the request: match.when sees no principal.
					cfg.Rules[i].Match.When = benchConditions[2 : 2+bc.n]
				} else {
					cfg.Rules[i].When = benchConditions[:bc.n]
				}
			}
			p, err := authz.NewPipeline(cfg, testAuthenticators(), authz.Options{})
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]*authz.Request, 256)
			for i := range reqs {
				reqs[i] = req("GET", "api.example.com", "/api/orders", "x-api-key", "k-alice", "x-team", "payments")
				reqs[i].PeerAddress = "192.0.2." + strconv.Itoa(i)
			}
			b.ReportAllocs()
			benchcpu.Report(b)
			i := 0
			for b.Loop() {
				r := *reqs[i%len(reqs)]
				i++
				d := p.Decide(context.Background(), &r)
				if !d.Allowed() || d.Rule != "api" {
					b.Fatalf("%v %s %s", d.Code, d.Reason, d.Rule)
				}
			}
		})
	}
}
