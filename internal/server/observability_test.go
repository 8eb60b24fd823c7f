package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/tokens"
)

// fullConfig exercises every metric source: all four authenticator kinds,
// Redis sessions, Redis-backed rate limits, revocation, and reloads.
func fullConfig(t *testing.T, redisAddr, jwksURL, limits string) string {
	keys := servicetest.KeysFile(t, t.TempDir())
	return `server:
  grpc_address: "127.0.0.1:0"
  drain_delay: 10ms
  reload_interval: -1s
admin:
  address: "127.0.0.1:0"
redis:
  addrs: ["` + redisAddr + `"]
  read_timeout: 200ms
revocation: {enabled: true}
authenticators:
  - name: keys
    source: {header: x-api-key}
    api_key: {file: "` + keys + `"}
  - name: ticket
    source: {header: x-udb-token}
    udb_ticket:
      keys: [{id: dev-1, file: ` + servicetest.QuickstartKeys() + `ticket-hs256.key}]
  - name: jwt
    source: {authorization: Bearer}
    jwt:
      issuers:
        - issuer: https://issuer.quickstart.example
          audiences: [quickstart]
          jwks_url: ` + jwksURL + `
  - name: session
    source: {cookie: udb_session}
    udb_session: {cache_ttl: 1s, negative_cache_ttl: 50ms}
policy:
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
rate_limit:
  files: ["` + limits + `"]
  backend: redis
  timeout: 2s
`
}

// quickstartJWKSServer serves the quickstart's dev JWKS over HTTP, as an
// issuer's JWKS endpoint would.
func quickstartJWKSServer(t *testing.T) *httptest.Server {
	t.Helper()
	jwks, err := os.ReadFile(servicetest.QuickstartKeys() + "jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	t.Cleanup(srv.Close)
	return srv
}

// TestMetricsEndToEnd makes each event happen against the real service and
// reads /metrics over HTTP: every series the service promises moves.
func TestMetricsEndToEnd(t *testing.T) {
	rs := redistest.Start(t)
	jwksSrv := quickstartJWKSServer(t)
	candidate, _ := candidateSection(t, fullCandidatePolicy)
	h := start(t, fullConfig(t, rs.Addr, jwksSrv.URL, limitsFile(t, 1))+candidate)

	jwt := servicetest.MintJWT(t, "jwt-rs256.pem", "dev-rs256-1", "quickstart", "erin")
	ticket := servicetest.MintTicket(t, "frank")
	const session = "c2Vzc2lvbi10b2tlbi1vZi1naW5hLTAwMQ"
	sum := sha256.Sum256([]byte(session))
	if _, err := rs.Do("HSET", "udb:session:"+hex.EncodeToString(sum[:]), "uid", "gina"); err != nil {
		t.Fatal(err)
	}
	secrets := []string{jwt, ticket, session, servicetest.KeyAlice}

	expectCode := func(wantHTTP int32, path string, headers ...[2]string) {
		t.Helper()
		resp := h.check(t, "GET", "shop.example.com", path, headers...)
		got := int32(200)
		if resp.GetStatus().GetCode() != 0 {
			got = int32(resp.GetDeniedResponse().GetStatus().GetCode())
		}
		if got != wantHTTP {
			t.Fatalf("%s %v: %d (%s), want %d", path, headers, got, resp.GetStatus().GetMessage(), wantHTTP)
		}
	}
	expectCode(200, "/app/x", [2]string{"x-api-key", servicetest.KeyAlice})
	expectCode(401, "/app/x")
	expectCode(200, "/app/x", [2]string{"authorization", "Bearer " + jwt}) // cache miss, then
	expectCode(200, "/app/x", [2]string{"authorization", "Bearer " + jwt}) // cache hit
	expectCode(200, "/app/x", [2]string{"x-udb-token", ticket})
	expectCode(200, "/app/x", [2]string{"cookie", "udb_session=" + session})
	expectCode(401, "/app/x", [2]string{"cookie", "udb_session=bm8tc3VjaC1zZXNzaW9uLWF0LWFsbA"})
	expectCode(200, "/limited/x", [2]string{"x-api-key", servicetest.KeyAlice})
	expectCode(429, "/limited/x", [2]string{"x-api-key", servicetest.KeyAlice})
	if err := h.svc.reload("test"); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	servicetest.WriteFile(t, h.path, "policy: {rules: []}\n")
	if err := h.svc.reload("test"); err == nil {
		t.Fatal("bad reload accepted")
	}
	// Redis gone: the session store and the limiter fail (closed, 503).
	rs.Stop()
	expectCode(503, "/limited/y", [2]string{"x-api-key", servicetest.KeyAdmin})

	fams := servicetest.Scrape(t, h.admin)
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"ext_authz_decisions_total", map[string]string{"result": "ok", "rule": "app"}},
		{"ext_authz_decisions_total", map[string]string{"result": "unauthenticated", "reason": "missing_credential"}},
		{"ext_authz_decisions_total", map[string]string{"result": "rate_limited", "rule": "limited"}},
		{"ext_authz_decisions_total", map[string]string{"result": "unavailable"}},
		{"ext_authz_check_duration_seconds", map[string]string{"result": "ok"}},
		{"ext_authz_token_cache_requests_total", map[string]string{"kind": "jwt", "result": "hit"}},
		{"ext_authz_token_cache_requests_total", map[string]string{"kind": "jwt", "result": "miss"}},
		{"ext_authz_jwks_refreshes_total", map[string]string{"result": "ok"}},
		{"ext_authz_jwks_last_success_timestamp_seconds", nil},
		{"ext_authz_session_lookups_total", map[string]string{"result": "found"}},
		{"ext_authz_session_lookups_total", map[string]string{"result": "missing"}},
		{"ext_authz_ratelimit_checks_total", map[string]string{"code": "ok"}},
		{"ext_authz_ratelimit_checks_total", map[string]string{"domain": "e2e", "code": "over_limit"}},
		{"ext_authz_ratelimit_checks_total", map[string]string{"code": "failed_closed"}},
		{"ext_authz_redis_call_duration_seconds", nil},
		{"ext_authz_redis_errors_total", nil},
		{"ext_authz_revocation_resyncs_total", map[string]string{"reason": "start"}},
		{"ext_authz_revocation_last_sync_timestamp_seconds", nil},
		{"ext_authz_revocation_max_records", nil},
		{"ext_authz_config_reloads_total", map[string]string{"result": "success"}},
		{"ext_authz_config_reloads_total", map[string]string{"result": "failure"}},
		{"process_cpu_seconds_total", nil},
		{"ext_authz_candidate_checks_total", map[string]string{"agreement": "disagree"}},
		{"ext_authz_candidate_disagreements_total", map[string]string{"live_rule": "app", "candidate_result": "forbidden"}},
	} {
		if v, found := servicetest.Value(fams, c.name, c.labels); !found || v <= 0 {
			t.Errorf("%s%v = %v (present %v), want > 0", c.name, c.labels, v, found)
		}
	}
	if _, found := servicetest.Value(fams, "ext_authz_checks_in_flight", nil); !found {
		t.Error("ext_authz_checks_in_flight missing")
	}

	// Every metric the shipped dashboard and alerts query exists.
	checkDashboardMetrics(t, fams)

	// No credential, nor a long piece of one, in any label or log line.
	for _, s := range secrets {
		s = s[:min(len(s), 16)]
		if strings.Contains(h.logs.String(), s) {
			t.Errorf("a credential appears in the logs")
		}
		for name, f := range fams {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if strings.Contains(l.GetValue(), s) {
						t.Errorf("credential in label %s of %s", l.GetName(), name)
					}
				}
			}
		}
	}
	if !strings.Contains(h.logs.String(), `"msg":"decision"`) {
		t.Error("no decision log lines")
	}
}

// checkDashboardMetrics reads deploy/observability and requires every
// ext_authz_* series it names to be exported.
func checkDashboardMetrics(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	files, _ := filepath.Glob("../../deploy/observability/*")
	re := regexp.MustCompile(`ext_authz_[a-z0-9_]+`)
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range re.FindAllString(string(b), -1) {
			if name == "ext_authz_grafana_dashboard" {
				continue
			}
			seen++
			base := name
			for _, suf := range []string{"_bucket", "_count", "_sum"} {
				base = strings.TrimSuffix(base, suf)
			}
			if _, ok := fams[base]; !ok {
				t.Errorf("%s queries %s, which the service does not export", filepath.Base(f), name)
			}
		}
	}
	if seen < 10 {
		t.Fatalf("only %d metric references found in deploy/observability", seen)
	}
}

// TestAttackTokensNeverLogged runs the token issue's attack cases through
// the real server with every denial logged, and checks the answers and the
// log.
func TestAttackTokensNeverLogged(t *testing.T) {
	rs := redistest.Start(t)
	jwksSrv := quickstartJWKSServer(t)
	h := start(t, fullConfig(t, rs.Addr, jwksSrv.URL, limitsFile(t, 100)))

	good := servicetest.MintJWT(t, "jwt-rs256.pem", "dev-rs256-1", "quickstart", "mallory")
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	tamperedPayload := parts[0] + "." + b64([]byte(`{"sub":"admin","iss":"https://issuer.quickstart.example","aud":"quickstart","exp":4102444800}`)) + "." + parts[2]
	algNone := b64([]byte(`{"alg":"none","typ":"JWT","kid":"dev-rs256-1"}`)) + "." + parts[1] + "."
	signer, err := tokens.NewJWTSigner(servicetest.QuickstartKeys()+"jwt-rs256.pem", "dev-rs256-1", "")
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour).Unix()
	expired, err := signer.Sign(map[string]any{"iss": "https://issuer.quickstart.example", "aud": "quickstart",
		"sub": "mallory", "iat": past, "exp": past + 60})
	if err != nil {
		t.Fatal(err)
	}
	wrongAud := servicetest.MintJWT(t, "jwt-rs256.pem", "dev-rs256-1", "elsewhere", "mallory")
	ticket := servicetest.MintTicket(t, "mallory")
	tamperedTicket := ticket[:len(ticket)-4] + "AAAA"
	huge := strings.Repeat("A", 9000)

	cases := []struct {
		name, header, value, reason string
	}{
		{"tampered payload", "authorization", "Bearer " + tamperedPayload, "bad_signature"},
		{"alg none", "authorization", "Bearer " + algNone, "unsupported_algorithm"},
		{"expired", "authorization", "Bearer " + expired, "expired"},
		{"wrong audience", "authorization", "Bearer " + wrongAud, "wrong_audience"},
		{"garbage", "authorization", "Bearer !!!not-a-token!!!", "malformed"},
		{"oversized", "authorization", "Bearer " + huge, "too_large"},
		{"tampered ticket", "x-udb-token", tamperedTicket, "bad_signature"},
	}
	for _, c := range cases {
		resp := h.check(t, "GET", "shop.example.com", "/app/x", [2]string{c.header, c.value})
		if code := resp.GetDeniedResponse().GetStatus().GetCode(); code != 401 || resp.GetStatus().GetMessage() != c.reason {
			t.Errorf("%s: %d %q, want 401 %q", c.name, code, resp.GetStatus().GetMessage(), c.reason)
		}
		if strings.Contains(resp.GetDeniedResponse().GetBody(), c.value[len(c.value)-16:]) {
			t.Errorf("%s: the token is echoed in the body", c.name)
		}
	}
	time.Sleep(50 * time.Millisecond)
	logs := h.logs.String()
	if n := strings.Count(logs, `"msg":"decision"`); n < len(cases) {
		t.Errorf("%d decision lines for %d denials", n, len(cases))
	}
	for _, c := range cases {
		v := strings.TrimPrefix(c.value, "Bearer ")
		for i := 0; i+24 <= len(v); i += 24 {
			if strings.Contains(logs, v[i:i+24]) {
				t.Fatalf("%s: a piece of the token is in the logs", c.name)
			}
		}
	}
}

// A client chooses the path's length, up to the 1 MiB message limit. Its
// denial must still make one short decision line that says how long the
// path was.
func TestDecisionLogClipsLongFields(t *testing.T) {
	h := start(t, servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), ""))
	path := "/api/" + strings.Repeat("é", 100_000) // 200 kB, two bytes a rune
	resp := h.check(t, strings.Repeat("M", 1000), strings.Repeat("h", 1000)+".example.com", path)
	if resp.GetDeniedResponse().GetStatus().GetCode() == 0 {
		t.Fatalf("the long request was not denied: %v", resp)
	}
	var line string
	waitFor(t, func() bool {
		for l := range strings.Lines(h.logs.String()) {
			if strings.Contains(l, `"msg":"decision"`) {
				line = l
				return true
			}
		}
		return false
	}, "the decision line")
	if len(line) > 2048 {
		t.Fatalf("decision line is %d bytes, want at most 2048", len(line))
	}
	if !strings.Contains(line, fmt.Sprintf(`"path_bytes":%d`, len(path))) {
		t.Errorf("the line does not give the path's length %d: %s", len(path), line)
	}
	if !strings.Contains(line, `"path":"/api/éé`) || !strings.Contains(line, `..."`) {
		t.Errorf("the line does not keep the path's start, marked as cut: %s", line)
	}
}
