package server

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// candidatePolicy is servicetest.BaseConfig's policy with the api rule
// made stricter (it needs the admin scope).
const candidatePolicy = `policy:
  realm: e2e
  identity_headers:
    claims: {team: x-auth-team}
  rules:
    - name: health
      match: {path: {exact: /healthz}}
      action: allow
    - name: admin
      match: {path: {prefix: /admin/}}
      action: authenticate
      authenticators: [keys]
      require: {scopes: [admin]}
    - name: api-admins
      match: {hosts: ["*.example.com"], path: {prefix: /api/}}
      action: authenticate
      authenticators: [keys]
      require: {scopes: [admin]}
`

// candidateSection writes policy into a candidate file and returns the
// policy_candidate section naming it.
func candidateSection(t *testing.T, policy string) (section, file string) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "candidate.yaml")
	servicetest.WriteFile(t, file, policy)
	return "policy_candidate:\n  file: " + file + "\n  sample_percent: 100\n", file
}

// TestCandidatePolicyEndToEnd: over gRPC, the live decision is enforced,
// the candidate's disagreement is counted by rule pair and logged without
// the credential; the candidate file is watched like the other files, a
// broken one is rejected with its own file and line, and removing the
// section turns the candidate off.
func TestCandidatePolicyEndToEnd(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	section, candFile := candidateSection(t, candidatePolicy)
	h := start(t, servicetest.BaseConfig(keys, "")+section)
	api := func(key string) int {
		return httpStatusOf(h.check(t, "GET", "a.example.com", "/api/x", [2]string{"x-api-key", key}))
	}
	metric := func(name string, labels map[string]string) float64 {
		v, _ := servicetest.Value(servicetest.Scrape(t, h.admin), name, labels)
		return v
	}
	if got := api(servicetest.KeyAlice); got != 200 {
		t.Fatalf("alice: %d, want the live 200 enforced", got)
	}
	if got := api(servicetest.KeyAdmin); got != 200 {
		t.Fatalf("admin: %d", got)
	}
	if got := httpStatusOf(h.check(t, "GET", "a.example.com", "/admin/x", [2]string{"x-api-key", servicetest.KeyAlice})); got != 403 {
		t.Fatalf("alice on /admin/: %d", got)
	}
	pair := map[string]string{"live_rule": "api", "candidate_rule": "api-admins", "live_result": "ok", "candidate_result": "forbidden"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ext_authz_candidate_checks_total", map[string]string{"agreement": "disagree"}, 1},
		{"ext_authz_candidate_checks_total", map[string]string{"agreement": "agree"}, 2},
		{"ext_authz_candidate_disagreements_total", pair, 1},
		{"ext_authz_candidate_sample_percent", nil, 100},
		{"ext_authz_candidate_logs_suppressed_total", nil, 0},
	} {
		if got := metric(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	logs := h.logs.String()
	line := ""
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "candidate policy disagrees") {
			line = l
		}
	}
	for _, want := range []string{`"differs":"result,reason"`, `"live":{"result":"ok","reason":"","rule":"api","subject":"alice"`,
		`"candidate":{"result":"forbidden","reason":"insufficient_scope","rule":"api-admins","subject":"alice"`, `"path":"/api/x"`} {
		if !strings.Contains(line, want) {
			t.Errorf("disagreement log line lacks %s:\n%s", want, line)
		}
	}

	// The candidate file is watched: made equal to the live policy, it
	// agrees.
	live := servicetest.BaseConfig(keys, "")
	servicetest.WriteFile(t, candFile, live[strings.Index(live, "policy:"):])
	waitFor(t, func() bool {
		before := metric("ext_authz_candidate_checks_total", map[string]string{"agreement": "agree"})
		api(servicetest.KeyAlice)
		return metric("ext_authz_candidate_checks_total", map[string]string{"agreement": "agree"}) == before+1
	}, "the rewritten candidate to agree")
	disagreed := metric("ext_authz_candidate_checks_total", map[string]string{"agreement": "disagree"})

	// A broken candidate is rejected with its own file and line; the old
	// one keeps running.
	servicetest.WriteFile(t, candFile, "policy:\n  rules:\n    - name: x\n      match: {path: {prefix: /}}\n      action: authenticate\n      authenticators: [nope]\n")
	waitFor(t, func() bool { return strings.Contains(h.logs.String(), "config reload rejected") }, "the broken candidate to be rejected")
	if logs := h.logs.String(); !strings.Contains(logs, "policy_candidate.file: "+candFile+":6: policy.rules[0].authenticators[0]") {
		t.Errorf("the rejection does not place the error in the candidate file:\n%s", logs)
	}
	if api(servicetest.KeyAlice) != 200 || metric("ext_authz_candidate_checks_total", map[string]string{"agreement": "disagree"}) != disagreed {
		t.Error("after a rejected candidate the serving one changed")
	}

	// Without the section, no candidate.
	servicetest.WriteFile(t, h.path, live)
	waitFor(t, func() bool { return metric("ext_authz_candidate_sample_percent", nil) == 0 }, "the candidate to be turned off")
	if logs := h.logs.String(); !strings.Contains(logs, `"msg":"candidate policy off"`) ||
		!strings.Contains(logs, `"msg":"candidate policy beside the live one","file":"`+candFile+`","sample_percent":100`) {
		t.Errorf("the log does not say when the candidate runs:\n%s", logs)
	}
	before := metric("ext_authz_candidate_checks_total", nil)
	api(servicetest.KeyAlice)
	if got := metric("ext_authz_candidate_checks_total", nil); got != before {
		t.Errorf("candidate checks %v → %v with no candidate", before, got)
	}
	if strings.Contains(h.logs.String(), servicetest.KeyAlice) {
		t.Error("a key in the logs")
	}
}

// TestCandidateConfigErrors: the candidate's mistakes are refused at load
// with file:line: field.path: message.
func TestCandidateConfigErrors(t *testing.T) {
	dir := t.TempDir()
	keys := servicetest.KeysFile(t, dir)
	cand := filepath.Join(dir, "cand.yaml")
	for _, tt := range []struct {
		name, section, candidate, want string
	}{
		{"unknown field", "policy_candidate: {file: " + cand + "}\n", "policy:\n  rulez: []\n", cand + ":2: "},
		{"missing file", "policy_candidate: {file: " + filepath.Join(dir, "none.yaml") + "}\n", "", "policy_candidate.file: open "},
		{"percent out of range", "policy_candidate: {file: " + cand + ", sample_percent: 101}\n", candidatePolicy, "policy_candidate.sample_percent: 101: must be 0 to 100"},
		{"percent without file", "policy_candidate: {sample_percent: 5}\n", "", "policy_candidate.file: required with sample_percent"},
		{"duplicate rule", "policy_candidate: {file: " + cand + "}\n", candidatePolicy + candidatePolicy[strings.Index(candidatePolicy, "    - name: admin"):], cand + ":19: policy.rules[3].name"},
		{"environment reference", "policy_candidate: {file: " + cand + "}\n", "policy: {realm: \"${REALM}\"}\n", cand + ":1: policy.realm"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			servicetest.WriteFile(t, cand, tt.candidate)
			path := filepath.Join(dir, "config.yaml")
			servicetest.WriteFile(t, path, servicetest.BaseConfig(keys, "")+tt.section)
			err := compileFile(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), path+":") {
				t.Errorf("error %q does not start with the config file", err)
			}
		})
	}
	_ = os.Remove(cand)
}

// fullCandidatePolicy is fullConfig's policy with the app rule needing the
// admin scope, for TestMetricsEndToEnd.
const fullCandidatePolicy = `policy:
  rules:
    - name: limited
      match: {path: {prefix: /limited/}}
      action: authenticate
      authenticators: [keys]
      rate_limits:
        domain: e2e
        descriptors:
          - actions: [{identity: {field: subject, descriptor_key: user}}]
    - name: app
      match: {path: {prefix: /app/}}
      action: authenticate
      authenticators: [keys, ticket, jwt, session]
      require: {scopes: [admin]}
`

// TestCandidateDoesNotRepeatRedisWork: with a real Redis behind the
// sessions and the rate limits, a candidate that disagrees on every
// request adds no session lookup and no counter increment: one HGETALL
// and one limiter check per Check, as without a candidate.
func TestCandidateDoesNotRepeatRedisWork(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	limits := filepath.Join(dir, "limits.yaml")
	servicetest.WriteFile(t, limits, "domain: e2e\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 100}\n")
	policy := func(name, require string) string {
		return `policy:
  rules:
    - name: ` + name + `
      match: {path: {prefix: /app/}}
      action: authenticate
      authenticators: [session]
` + require + `      rate_limits:
        domain: e2e
        descriptors:
          - actions: [{identity: {field: subject, descriptor_key: user}}]
`
	}
	section, _ := candidateSection(t, policy("app-v2", "      require: {scopes: [admin]}\n"))
	h := start(t, `server: {grpc_address: "127.0.0.1:0", drain_delay: 10ms, reload_interval: -1s}
admin: {address: "127.0.0.1:0"}
redis: {addrs: ["`+rs.Addr+`"]}
authenticators:
  - name: session
    source: {cookie: sid}
    udb_session: {key_prefix: "cand:s:", cache_size: -1}
rate_limit:
  files: ["`+limits+`"]
  backend: redis
  timeout: 2s
`+policy("app", "")+section)
	const tok = "candidateSessionToken01"
	if _, err := rs.Do("HSET", "cand:s:"+sha256Hex(tok), "uid", "gina"); err != nil {
		t.Fatal(err)
	}
	const n = 3
	for range n {
		if got := httpStatusOf(h.check(t, "GET", "a.example.com", "/app/x", [2]string{"cookie", "sid=" + tok})); got != 200 {
			t.Fatalf("status %d, want the live 200", got)
		}
	}
	if got := hgetallCalls(t, rs); got != n {
		t.Errorf("%d session lookups for %d Checks", got, n)
	}
	fams := servicetest.Scrape(t, h.admin)
	if v, _ := servicetest.Value(fams, "ext_authz_ratelimit_checks_total", nil); v != n {
		t.Errorf("%v limiter checks for %d Checks", v, n)
	}
	// The counter in Redis counted each Check once.
	key, err := rs.Do("KEYS", "rl:*")
	if err != nil || !strings.Contains(key, "gina") || strings.Count(key, "\n") > 1 {
		t.Fatalf("counter keys %q, %v", key, err)
	}
	if v, err := rs.Do("GET", strings.TrimSpace(key)); err != nil || strings.TrimSpace(v) != "3" {
		t.Errorf("counter %q = %q (%v), want 3", key, v, err)
	}
	if v, _ := servicetest.Value(fams, "ext_authz_candidate_disagreements_total", map[string]string{"live_rule": "app", "candidate_rule": "app-v2", "candidate_result": "forbidden"}); v != n {
		t.Errorf("%v disagreements, want %d", v, n)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
