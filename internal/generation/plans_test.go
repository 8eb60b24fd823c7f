package generation

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/tokens"
)

// plansConfig is a config whose API keys carry a plan claim, and a rule
// whose descriptor takes the caller's plan.
func plansConfig(t *testing.T, rates string) string {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	limits := filepath.Join(dir, "limits.yaml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(keys, fmt.Sprintf("keys:\n  - subject: alice\n    sha256: %s\n    claims: {tier: pro}\n  - subject: bob\n    sha256: %s\n",
		tokens.HashAPIKey("key-alice-0123456789"), tokens.HashAPIKey("key-bob-0123456789")))
	write(limits, "domain: gateway\ndescriptors:\n  - key: other\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	cfg := `authenticators:
  - name: keys
    source: {header: x-api-key}
    api_key: {file: "` + keys + `"}
policy:
  rules:
    - name: api
      match: {path: {prefix: /}}
      action: authenticate
      authenticators: [keys]
      rate_limits:
        domain: gateway
        descriptors:
          - actions: [{identity: {field: subject, descriptor_key: user}}]
            plan: api
rate_limit:
  files: ["` + limits + `"]
  algorithm: sliding_window
  default_plan: free
  plan_claim: tier
  plans:
    free: {api: [1/minute]}
    pro:
      api: [` + rates + `]
`
	path := filepath.Join(dir, "config.yaml")
	write(path, cfg)
	return path
}

func TestPlansFromConfigFile(t *testing.T) {
	cfg, err := Load(plansConfig(t, "3/minute, 100/day"), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Compile(&Env{Pool: pool.New(pool.Options{})}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Release() })
	decide := func(key string) authz.Decision {
		return g.Pipeline.Decide(context.Background(), &authz.Request{Method: "GET", Host: "h", Path: "/x", Headers: map[string]string{"x-api-key": key}})
	}
	for _, tt := range []struct {
		key     string
		allowed int
		plan    string
		policy  string
	}{
		{"key-alice-0123456789", 3, "pro", `"pro/api/minute";q=3;w=60`},
		{"key-bob-0123456789", 1, "free", `"free/api/minute";q=1;w=60`},
	} {
		n := 0
		var d authz.Decision
		for range 5 {
			if d = decide(tt.key); d.Allowed() {
				n++
			}
		}
		if n != tt.allowed || d.Identity.Plan != tt.plan || d.RateLimitPolicy != tt.policy {
			t.Errorf("%s: %d allowed, plan %q, policy %s; want %d, %q, %s", tt.key[:8], n, d.Identity.Plan, d.RateLimitPolicy, tt.allowed, tt.plan, tt.policy)
		}
	}
}

func TestPlansConfigErrorNamesFileLineAndField(t *testing.T) {
	path := plansConfig(t, "3/minute, 100/days")
	cfg, err := Load(path, os.Getenv)
	if err == nil {
		_, err = Compile(&Env{Pool: pool.New(pool.Options{})}, cfg)
		err = cfg.Annotate(err)
	}
	want := path + ":24: rate_limit.plans.pro.api[1]: \"100/days\": unit must be one of"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
}

// TestPlansReloadWithoutRestart: plans, quotas, default_plan and
// plan_claim are each generation's; the rest of rate_limit stays
// restart-only.
func TestPlansReloadWithoutRestart(t *testing.T) {
	load := func(rates string) *Config {
		cfg, err := Load(plansConfig(t, rates), os.Getenv)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	running, next := load("3/minute"), load("30/minute, 100/day")
	next.RateLimit.Files = running.RateLimit.Files // the same limits, only the plans differ
	if changed := KeepRestartOnly(next, running); len(changed) != 0 {
		t.Errorf("a plan change asks for a restart: %v", changed)
	}
	if got := next.RateLimit.Plans["pro"]["api"]; len(got) != 2 || got[0] != "30/minute" {
		t.Errorf("the next generation's pro plan is %v, want the new one", got)
	}
	next = load("3/minute")
	next.RateLimit.Files = running.RateLimit.Files
	next.RateLimit.Algorithm = "gcra"
	if changed := KeepRestartOnly(next, running); len(changed) != 1 || next.RateLimit.Algorithm != "sliding_window" {
		t.Errorf("an algorithm change: restart %v, kept %q; want it restart-only", changed, next.RateLimit.Algorithm)
	}
}
