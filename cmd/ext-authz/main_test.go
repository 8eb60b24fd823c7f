package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ext-authz/ext-authz/internal/cli"
	"github.com/ext-authz/ext-authz/tokens"
)

// Helpers shared with internal/server's tests (a test package cannot
// import another's): the same dev keys and base config.

// The dev keys of these tests and their digests.
const (
	keyAlice = "e2e-key-alice"
	keyAdmin = "e2e-key-admin"
)

func keysFile(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "keys.yaml")
	body := fmt.Sprintf(`keys:
  - subject: alice
    sha256: %s
    scopes: [read]
    claims: {team: payments}
  - subject: admin
    sha256: %s
    scopes: [read, admin]
`, tokens.HashAPIKey(keyAlice), tokens.HashAPIKey(keyAdmin))
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// baseConfig is a complete config on free loopback ports; extraRules are
// inserted before the api rule.
func baseConfig(keys, extraRules string) string {
	return `server:
  grpc_address: "127.0.0.1:0"
  drain_delay: 100ms
  drain_timeout: 5s
  reload_interval: 50ms
admin:
  address: "127.0.0.1:0"
authenticators:
  - name: keys
    source: {header: x-api-key}
    challenge_scheme: ApiKey
    strip_credential: true
    api_key: {file: "` + keys + `"}
policy:
  realm: e2e
  identity_headers:
    claims: {team: x-auth-team}
  rules:
    - name: health
      match: {path: {exact: /healthz}}
      action: allow
` + extraRules + `    - name: admin
      match: {path: {prefix: /admin/}}
      action: authenticate
      authenticators: [keys]
      require: {scopes: [admin]}
    - name: api
      match: {hosts: ["*.example.com"], path: {prefix: /api/}}
      action: authenticate
      authenticators: [keys]
`
}

// syncBuffer is a log sink the test can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value sums the samples of name whose labels include want (counter,
// gauge, or a histogram's count).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCommands(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, io.Discard, os.Getenv); err != nil || !strings.HasPrefix(out.String(), "ext-authz ") {
		t.Errorf("version: %q, %v", out.String(), err)
	}
	err := run(context.Background(), []string{"frobnicate"}, io.Discard, io.Discard, os.Getenv)
	if cli.ExitCode(err) != 2 {
		t.Errorf("unknown command: exit %d (%v), want 2", cli.ExitCode(err), err)
	}
	if err := run(context.Background(), []string{"serve"}, io.Discard, io.Discard, os.Getenv); cli.ExitCode(err) != 2 {
		t.Errorf("serve without --config: %v", err)
	}
	out.Reset()
	// The quickstart config must always be valid (paths are relative to the
	// repository root).
	t.Chdir("../..")
	if err := run(context.Background(), []string{"check-config", "examples/quickstart/config.yaml"}, &out, io.Discard, os.Getenv); err != nil {
		t.Errorf("check-config quickstart: %v", err)
	}
}

// TestConfigErrors runs check-config over one fixture per kind of mistake;
// each fixture's first line says what the error must contain: the file,
// the line and the field path.
func TestConfigErrors(t *testing.T) {
	files, _ := filepath.Glob("testdata/config-errors/*.yaml")
	if len(files) < 10 {
		t.Fatalf("only %d fixtures", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(raw), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be '# want: ...'", f)
			}
			err = run(context.Background(), []string{"check-config", f}, io.Discard, io.Discard, func(string) string { return "" })
			if err == nil {
				t.Fatalf("check-config accepted %s", f)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error:\n  %v\nwant it to contain:\n  %s", err, want)
			}
		})
	}
}
