package ratelimit_test

import (
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
)

func TestParseRate(t *testing.T) {
	for _, tt := range []struct {
		give string
		want string // FormatRate of the result, "" for an error
	}{
		{"10/second", "10/second"},
		{"10000/day", "10000/day"},
		{"0/minute", "0/minute"},
		{"4294967295/year", "4294967295/year"},
		{"unlimited", "unlimited"},
		{"4294967296/second", ""},
		{"-1/second", ""},
		{"+1/second", ""},
		{"01/second", ""},
		{"1.5/second", ""},
		{" 1/second", ""},
		{"1/ second", ""},
		{"1/Second", ""},
		{"1/seconds", ""},
		{"1/unknown", ""},
		{"1", ""},
		{"/second", ""},
		{"1/", ""},
		{"1/second/2", ""},
		{"Unlimited", ""},
		{"", ""},
	} {
		l, err := ratelimit.ParseRate(tt.give)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParseRate(%q) = %+v, want an error", tt.give, l)
		case tt.want != "" && err != nil:
			t.Errorf("ParseRate(%q): %v", tt.give, err)
		case tt.want != "" && ratelimit.FormatRate(&l) != tt.want:
			t.Errorf("ParseRate(%q) formats as %q, want %q", tt.give, ratelimit.FormatRate(&l), tt.want)
		}
	}
}

// FuzzParseRate: no panic, and what parses formats back to the same text
// (the syntax has one spelling per rate).
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"10/second", "unlimited", "0/day", "4294967296/hour", "01/minute", "1/Week", "1//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ratelimit.ParseRate(s)
		if err != nil {
			return
		}
		if got := ratelimit.FormatRate(&l); got != s {
			t.Fatalf("ParseRate(%q) formats as %q", s, got)
		}
		if !l.Unlimited && l.Unit.Seconds() == 0 {
			t.Fatalf("ParseRate(%q): no window", s)
		}
	})
}

func plansConfig() ratelimit.Config {
	return ratelimit.Config{
		Files: []string{"limits.yaml"},
		Plans: map[string]map[string][]string{
			"free":    {"api": {"10/second", "10000/day"}, "search": {"1/second"}},
			"pro":     {"api": {"100/second", "1000000/day"}},
			"partner": {"api": {"unlimited"}},
		},
		DefaultPlan: "free",
		PlanClaim:   "plan",
		Quotas:      map[string]ratelimit.QuotaConfig{"api": {Claim: "api_per_day", Unit: "day", Max: 50000}},
	}
}

func TestPlansResolveAndLimits(t *testing.T) {
	c := plansConfig()
	p, err := c.CompilePlans()
	if err != nil {
		t.Fatal(err)
	}
	rates := func(ls []*ratelimit.Limit) string {
		var out []string
		for _, l := range ls {
			out = append(out, ratelimit.FormatRate(l)+"@"+l.Plan)
		}
		return strings.Join(out, ",")
	}
	for _, tt := range []struct {
		name   string
		claims map[string]any
		desc   string
		plan   string
		want   string
	}{
		{"no claims: default plan", nil, "api", "free", "10/second@free,10000/day@free"},
		{"plan claim", map[string]any{"plan": "pro"}, "api", "pro", "100/second@pro,1000000/day@pro"},
		{"unknown plan: default", map[string]any{"plan": "platinum"}, "api", "free", "10/second@free,10000/day@free"},
		{"plan claim not a string: default", map[string]any{"plan": []any{"pro"}}, "api", "free", "10/second@free,10000/day@free"},
		{"plan without the name: default plan's", map[string]any{"plan": "pro"}, "search", "pro", "1/second@free"},
		{"unlimited plan", map[string]any{"plan": "partner"}, "search", "partner", "1/second@free"},
		{"quota replaces the window of its unit", map[string]any{"plan": "pro", "api_per_day": float64(20000)}, "api", "pro", "100/second@pro,20000/day@pro"},
		{"quota bounded by max", map[string]any{"api_per_day": float64(1e9)}, "api", "free", "10/second@free,50000/day@free"},
		{"quota from a session field", map[string]any{"api_per_day": "300"}, "api", "free", "10/second@free,300/day@free"},
		{"quota from an API key attribute", map[string]any{"api_per_day": 7}, "api", "free", "10/second@free,7/day@free"},
		{"broken quota fails closed", map[string]any{"api_per_day": "lots"}, "api", "free", "10/second@free,0/day@free"},
		{"fractional quota fails closed", map[string]any{"api_per_day": 2.5}, "api", "free", "10/second@free,0/day@free"},
		{"negative quota fails closed", map[string]any{"api_per_day": float64(-3)}, "api", "free", "10/second@free,0/day@free"},
		{"quota beside an unlimited plan", map[string]any{"plan": "partner", "api_per_day": float64(5)}, "api", "partner", "unlimited@partner,5/day@partner"},
	} {
		plan := p.Resolve(tt.claims)
		if plan != tt.plan {
			t.Errorf("%s: plan %q, want %q", tt.name, plan, tt.plan)
			continue
		}
		if got := rates(p.Limits(plan, tt.desc, tt.claims)); got != tt.want {
			t.Errorf("%s: limits %s, want %s", tt.name, got, tt.want)
		}
	}
	if !p.Has("api") || !p.Has("search") || p.Has("other") {
		t.Errorf("Has: names %v", p.Names())
	}
}

func TestPlansConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(c *ratelimit.Config)
		want   string
	}{
		{"bad rate", func(c *ratelimit.Config) { c.Plans["pro"]["api"][1] = "lots/day" }, "plans.pro.api[1]: \"lots/day\": requests must be a whole number"},
		{"two limits per unit", func(c *ratelimit.Config) { c.Plans["pro"]["api"] = []string{"1/second", "2/second"} }, "plans.pro.api[1]: a second limit per second (also [0])"},
		{"no rates", func(c *ratelimit.Config) { c.Plans["pro"]["api"] = nil }, "plans.pro.api: at least one rate"},
		{"no default plan", func(c *ratelimit.Config) { c.DefaultPlan = "" }, "default_plan: required with plans"},
		{"unknown default plan", func(c *ratelimit.Config) { c.DefaultPlan = "gold" }, "default_plan: \"gold\" is not one of the plans (free, partner, pro)"},
		{"default plan lacks a name", func(c *ratelimit.Config) { c.Plans["pro"]["export"] = []string{"1/hour"} }, "plans.free: lacks export, which plans.pro defines"},
		{"quota without claim", func(c *ratelimit.Config) { c.Quotas["api"] = ratelimit.QuotaConfig{Unit: "day", Max: 1} }, "quotas.api.claim: required"},
		{"quota without max", func(c *ratelimit.Config) { c.Quotas["api"] = ratelimit.QuotaConfig{Claim: "q", Unit: "day"} }, "quotas.api.max: required"},
		{"quota bad unit", func(c *ratelimit.Config) {
			c.Quotas["api"] = ratelimit.QuotaConfig{Claim: "q", Unit: "fortnight", Max: 1}
		}, "quotas.api.unit: \"fortnight\" is not one of"},
		{"plans without files", func(c *ratelimit.Config) { c.Files = nil }, "files: required with plans"},
		{"bad algorithm", func(c *ratelimit.Config) { c.Algorithm = "leaky_bucket" }, "algorithm: \"leaky_bucket\" is not one of"},
		{"bad domain algorithm", func(c *ratelimit.Config) {
			c.Domains = map[string]ratelimit.DomainConfig{"gw": {Algorithm: "smooth"}}
		}, "domains.gw.algorithm: \"smooth\" is not one of"},
		{"plan claim without plans", func(c *ratelimit.Config) { c.Plans, c.Quotas, c.DefaultPlan = nil, nil, "" }, "plan_claim: no plans are defined"},
	} {
		c := plansConfig()
		tt.change(&c)
		c.ApplyDefaults()
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		found := false
		for _, e := range strings.Split(yamlfile.Wrap("rate_limit", err).Error(), "\n") {
			if strings.Contains(e, "rate_limit."+tt.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: error %q lacks %q", tt.name, err, "rate_limit."+tt.want)
		}
	}
	c := plansConfig()
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	c.Algorithm = "sliding_window"
	c.Domains = map[string]ratelimit.DomainConfig{"gw": {Algorithm: "token_bucket"}, "other": {FailureMode: "allow"}}
	o := c.LimiterOptions()
	if o.Algorithm != ratelimit.SlidingWindow || o.Algorithms["gw"] != ratelimit.GCRA || len(o.Algorithms) != 1 {
		t.Fatalf("options: %v %v", o.Algorithm, o.Algorithms)
	}
}
