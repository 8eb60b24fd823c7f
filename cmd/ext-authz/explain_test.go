package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/cli"
)

// explainConfig is a config with conditions, a CIDR match and a shadow
// rule over the quickstart's API keys (dev-key-alice: team payments).
const explainConfig = `
authenticators:
  - name: api-keys
    source: {header: x-api-key}
    api_key: {file: KEYS}
policy:
  rules:
    - name: office
      match:
        path: {prefix: /ops/}
        client_cidrs: [203.0.113.0/24]
      action: allow
    - name: trial
      mode: shadow
      match: {path: {prefix: /api/}}
      action: deny
    - name: api
      match:
        path: {prefix: /api/}
        when: ["request.method in ['GET', 'POST']"]
      action: authenticate
      authenticators: [api-keys]
      when: ["principal.claims.team == request.headers['x-team']"]
`

func writeExplainConfig(t *testing.T) string {
	t.Helper()
	keys, err := filepath.Abs("../../examples/quickstart/api-keys.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(explainConfig, "KEYS", keys)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckExplainConfig runs check --config [--explain] in process: the
// decision and exit status a server would give, the explanation, and no
// credential in the output.
func TestCheckExplainConfig(t *testing.T) {
	cfg := writeExplainConfig(t)
	tests := []struct {
		give     []string
		wantCode int
		want     []string
	}{
		{[]string{"--explain", "--url", "https://example.com/api/orders", "-H", "x-api-key: dev-key-alice", "-H", "x-team: payments"}, cli.ExitOK, []string{
			"[0] office: no match (path)",
			"[1] trial (shadow): matched; would decide forbidden denied_by_rule; matching continues",
			"[2] api: matched",
			"match.when[0] request.method in ['GET', 'POST']: true [reads request.method=GET]",
			"authenticator api-keys: credential present, accepted",
			"requirement when[0] principal.claims.team == request.headers['x-team']: true",
			"decision: ok - (rule api)",
		}},
		{[]string{"--explain", "--url", "https://example.com/api/orders", "-H", "x-api-key: dev-key-alice", "-H", "x-team: platform"}, cli.ExitForbidden, []string{
			"requirement when[0] principal.claims.team == request.headers['x-team']: false",
			"decision: forbidden condition_failed (rule api)",
		}},
		{[]string{"--explain", "-X", "DELETE", "--url", "https://example.com/api/orders"}, cli.ExitForbidden, []string{
			"[2] api: no match (match.when[0])",
			"decision: forbidden no_matching_rule",
		}},
		{[]string{"--explain", "--url", "https://example.com/ops/x", "--peer", "10.0.0.9", "-H", "x-forwarded-for: 203.0.113.5"}, cli.ExitForbidden, []string{
			"(client address 10.0.0.9)", "[0] office: no match (client_cidrs)",
		}},
		{[]string{"--url", "https://example.com/ops/x", "--peer", "203.0.113.5"}, cli.ExitOK, []string{"ALLOW 200 rule=office"}},
		{[]string{"--url", "https://example.com/api/x", "-H", "x-api-key: nope"}, cli.ExitUnauth, []string{"DENY 401 rule=api reason=unknown_credential"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.give, " "), func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"check", "--config", cfg}, tt.give...), &out, &out, func(string) string { return "" })
			if code := cli.ExitCode(err); code != tt.wantCode {
				t.Fatalf("exit %d (%v), want %d\n%s", code, err, tt.wantCode, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), "dev-key-alice") || strings.Contains(out.String(), "payments\"") {
				t.Errorf("output shows a credential or claim value:\n%s", out.String())
			}
		})
	}
}

func TestCheckExplainNeedsConfig(t *testing.T) {
	// Without --config, --explain asks a running server's admin port; with
	// none there it fails and says how to get an explanation.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	err = run(context.Background(), []string{"check", "--explain", "--admin", closed}, &bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" })
	if cli.ExitCode(err) != cli.ExitFailure || !strings.Contains(err.Error(), closed) || !strings.Contains(err.Error(), "--config FILE") {
		t.Fatalf("err = %v", err)
	}
	var out bytes.Buffer
	err = run(context.Background(), []string{"check", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, &out, &out, func(string) string { return "" })
	if cli.ExitCode(err) != cli.ExitFailure {
		t.Fatalf("missing config: %v", err)
	}
}
