package extauthz_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/benchcpu"
)

// BenchmarkCheckRules is the whole Check handler (proto in, proto out)
// under policies of 10, 1,000 and 10,000 rules, ten per host, for a
// gateway-sized request that matches the second-last rule and one that
// matches none: the rule count should not show in the cost of a Check.
func BenchmarkCheckRules(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		cfg := authz.Config{}
		for i := range n {
			rc := authz.RuleConfig{Name: "r" + strconv.Itoa(i), Action: authz.ActionAllow,
				Match: authz.MatchConfig{Hosts: []string{fmt.Sprintf("svc%d.example.com", i/10)}}}
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
			cfg.Rules = append(cfg.Rules, rc)
		}
		p, err := authz.NewPipeline(cfg, nil, authz.Options{})
		if err != nil {
			b.Fatal(err)
		}
		srv := extauthz.New(p, extauthz.Options{})
		host := fmt.Sprintf("svc%d.example.com", n/10-1)
		headers := [][2]string{{"user-agent", "Mozilla/5.0 (bench)"}, {"accept", "application/json"},
			{"x-forwarded-for", "203.0.113.7"}, {"x-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e"}}
		for _, c := range []struct {
			name  string
			path  string
			allow bool
		}{
			{"near-end", "/r" + strconv.Itoa(n-2) + "/items/42?page=2", true},
			{"no-match", "/nothing/here", false},
		} {
			req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: host, Path: c.path, Headers: headers, RequestID: "r"})
			b.Run("rules="+strconv.Itoa(n)+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				benchcpu.Report(b)
				ctx := context.Background()
				for b.Loop() {
					resp, _ := srv.Check(ctx, req)
					if (resp.GetStatus().GetCode() == 0) != c.allow {
						b.Fatalf("unexpected decision %v", resp.GetStatus())
					}
				}
			})
		}
	}
}
