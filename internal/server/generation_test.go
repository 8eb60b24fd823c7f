package server

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/filewatch"
	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/tokens"
)

// genSessionConfig serves two udb_session authenticators over srv: session
// (/app/, a long cache_ttl) and stale_session (/stale/, a short cache_ttl
// and a long stale_if_error). extra is one more rule, so a reload can
// change something unrelated to the sessions.
func genSessionConfig(t *testing.T, addr, extra string) string {
	t.Helper()
	return `server:
  grpc_address: "127.0.0.1:0"
  drain_delay: 10ms
  reload_interval: -1s
admin:
  address: "127.0.0.1:0"
redis:
  addrs: ["` + addr + `"]
authenticators:
  - name: session
    source: {cookie: sid}
    udb_session: {key_prefix: "gen:s:", timeout: 200ms, cache_ttl: 1m}
  - name: stale_session
    source: {cookie: ssid}
    udb_session: {key_prefix: "gen:s:", timeout: 200ms, cache_ttl: 300ms, stale_if_error: 1m}
policy:
  rules:
` + extra + `    - name: app
      match: {path: {prefix: /app/}}
      action: authenticate
      authenticators: [session]
    - name: stale
      match: {path: {prefix: /stale/}}
      action: authenticate
      authenticators: [stale_session]
`
}

// genSessionCheck returns the HTTP status of a Check on path with the
// session token in cookie.
func genSessionCheck(t *testing.T, h *harness, path, cookie, token string) int {
	t.Helper()
	return httpStatusOf(h.check(t, "GET", "shop.example.com", path, [2]string{"cookie", cookie + "=" + token}))
}

// hgetallCalls is how many HGETALL commands the real Redis has served: the
// session store's calls.
func hgetallCalls(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	out, err := srv.Do("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(out, "cmdstat_hgetall:calls=")
	if !ok {
		return 0
	}
	n, _, _ := strings.Cut(rest, ",")
	v, err := strconv.Atoi(n)
	if err != nil {
		t.Fatalf("commandstats: %q", out)
	}
	return v
}

// TestReloadKeepsSessionState: a reload that changes an unrelated rule
// keeps every udb_session verifier, with its cache and its stale_if_error
// copies, so a ConfigMap change during a Redis outage does not turn cached
// sessions into 503s.
func TestReloadKeepsSessionState(t *testing.T) {
	srv := redistest.Start(t)
	const tok = "genSessionToken000001"
	key := tokens.SessionConfig{KeyPrefix: "gen:s:"}
	key.ApplyDefaults()
	if _, err := srv.Do("HSET", key.SessionKey(tok), "uid", "u-1"); err != nil {
		t.Fatal(err)
	}
	h := start(t, genSessionConfig(t, srv.Addr, ""))

	for _, p := range []struct{ path, cookie string }{{"/app/x", "sid"}, {"/stale/x", "ssid"}} {
		if got := genSessionCheck(t, h, p.path, p.cookie, tok); got != 200 {
			t.Fatalf("%s before any reload = %d, want 200", p.path, got)
		}
	}
	calls := hgetallCalls(t, srv)
	if calls != 2 {
		t.Fatalf("store calls after two first lookups = %d, want 2", calls)
	}

	// An unrelated change, with Redis up: the cached session is served
	// without asking the store.
	rule := func(i int) string {
		return fmt.Sprintf("    - name: extra%d\n      match: {path: {exact: /extra%d}}\n      action: allow\n", i, i)
	}
	servicetest.WriteFile(t, h.path, genSessionConfig(t, srv.Addr, rule(1)))
	if err := h.svc.reload("test"); err != nil {
		t.Fatal(err)
	}
	if got := genSessionCheck(t, h, "/app/x", "sid", tok); got != 200 {
		t.Fatalf("/app/ after an unrelated reload = %d, want 200", got)
	}
	if got := hgetallCalls(t, srv); got != calls {
		t.Fatalf("store calls after a reload = %d, want %d: the reload dropped the session cache", got, calls)
	}

	// Past stale_session's cache_ttl, Redis goes down, and the ConfigMap
	// changes again.
	time.Sleep(400 * time.Millisecond)
	srv.Stop()
	servicetest.WriteFile(t, h.path, genSessionConfig(t, srv.Addr, rule(2)))
	if err := h.svc.reload("test"); err != nil {
		t.Fatal(err)
	}
	if got := genSessionCheck(t, h, "/app/x", "sid", tok); got != 200 {
		t.Errorf("cached session after a reload during a Redis outage = %d, want 200", got)
	}
	if got := genSessionCheck(t, h, "/stale/x", "ssid", tok); got != 200 {
		t.Errorf("stale_if_error session after a reload during a Redis outage = %d, want 200", got)
	}
	if got := genSessionCheck(t, h, "/app/x", "sid", "genSessionNeverSeen01"); got != http.StatusServiceUnavailable {
		t.Errorf("unseen session during the outage = %d, want 503 (the store is really down)", got)
	}
	if got := httpStatusOf(h.check(t, "GET", "x", "/extra2")); got != 200 {
		t.Errorf("the reloaded rule is not served: %d", got)
	}
}

// TestReloadKeepsJWKSKeys: an unchanged JWT authenticator keeps its fetched
// key set across a reload, even with the JWKS endpoint down; a changed one
// is built afresh and fetches.
func TestReloadKeepsJWKSKeys(t *testing.T) {
	ep := jwksResNewEndpoint(t)
	key := jwksResNewKey(t, "k1")
	ep.serve(200, jwksResSet(key))
	ep.up(t)
	opts := jwksResIssuerOpts{URL: ep.url(), RefreshInterval: "1h", MinRefreshInterval: "1h"}
	cfg := jwksResConfig(t, opts)
	h := start(t, cfg)
	if got := httpStatusOf(jwksResCheck(t, h, key.token(""))); got != 200 {
		t.Fatalf("before reload = %d", got)
	}
	hits := ep.hits.Load()

	ep.down()
	extra := "    - name: extra\n      match: {path: {exact: /extra}}\n      action: allow\n"
	servicetest.WriteFile(t, h.path, strings.Replace(cfg, "  rules:\n", "  rules:\n"+extra, 1))
	if err := h.svc.reload("test"); err != nil {
		t.Fatalf("reload with the JWKS endpoint down: %v", err)
	}
	if got := httpStatusOf(jwksResCheck(t, h, key.token(""))); got != 200 {
		t.Errorf("after reload = %d, want 200: the key set was dropped", got)
	}
	if got := ep.hits.Load(); got != hits {
		t.Errorf("JWKS fetches = %d after the reload, want %d", got, hits)
	}

	// A changed issuer (another fetch_timeout) is a new verifier: it
	// fetches once, and the reload waits for it.
	ep.up(t)
	opts.FetchTimeout = "400ms"
	servicetest.WriteFile(t, h.path, jwksResConfig(t, opts))
	if err := h.svc.reload("test"); err != nil {
		t.Fatalf("reload of a changed issuer: %v", err)
	}
	if got := ep.hits.Load(); got != hits+1 {
		t.Errorf("JWKS fetches = %d after a changed issuer, want %d", got, hits+1)
	}
	if got := httpStatusOf(jwksResCheck(t, h, key.token(""))); got != 200 {
		t.Errorf("after the changed issuer = %d", got)
	}
}

// halfWritten is baseConfig with an extra rule, and a prefix of it that is
// a valid config with another meaning: it ends just before the admin rule's
// scope requirement, so a key with only the read scope would pass /admin/.
func halfWritten(t *testing.T, keys string) (full, prefix string) {
	t.Helper()
	full = servicetest.BaseConfig(keys, "    - name: status\n      match: {path: {exact: /status}}\n      action: allow\n")
	i := strings.Index(full, "      require: {scopes: [admin]}")
	if i < 0 {
		t.Fatal("baseConfig changed: no admin scope requirement")
	}
	prefix = full[:i]
	path := filepath.Join(t.TempDir(), "prefix.yaml")
	servicetest.WriteFile(t, path, prefix)
	if err := compileFile(path); err != nil {
		t.Fatalf("the prefix must be a valid config for the test to mean anything: %v", err)
	}
	return full, prefix
}

// TestReloadNeverAppliesHalfWrittenFile drives the poller by hand: a file
// seen half-written by one poll and complete by the next is applied only
// once the complete content has stayed for a whole interval.
func TestReloadNeverAppliesHalfWrittenFile(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, strings.Replace(servicetest.BaseConfig(keys, ""), "reload_interval: 50ms", "reload_interval: -1s", 1))
	admin := func() int {
		return httpStatusOf(h.check(t, "GET", "a.example.com", "/admin/x", [2]string{"x-api-key", servicetest.KeyAlice}))
	}
	if got := admin(); got != 403 {
		t.Fatalf("read-only key on /admin/ = %d, want 403", got)
	}
	full, prefix := halfWritten(t, keys)
	const q = time.Second
	t0 := time.Now()
	var st filewatch.Settle
	steps := []struct {
		write string
		at    time.Duration
		want  bool
	}{
		{prefix, 0, false},     // the writer is half-way
		{prefix, q / 4, false}, // a ticker burst after a stall: not an interval
		{full, q, false},       // complete, but only just
		{full, 2 * q, true},    // unchanged for an interval: applied
	}
	for i, s := range steps {
		servicetest.WriteFile(t, h.path, s.write)
		if got := h.svc.poll(&st, t0.Add(s.at), q); got != s.want {
			t.Fatalf("poll %d: reloaded = %v, want %v", i, got, s.want)
		}
		if got := admin(); got != 403 {
			t.Fatalf("after poll %d: read-only key on /admin/ = %d, want 403 (a half-written file was applied)", i, got)
		}
	}
	if got := httpStatusOf(h.check(t, "GET", "x", "/status")); got != 200 {
		t.Errorf("the complete file was not applied: /status = %d", got)
	}
	if g := h.svc.gen.Load(); g.Files[h.path] != filewatch.DigestBytes([]byte(full)) || g.Config.Sum() != g.Files[h.path] {
		t.Errorf("the generation's digest is not that of the bytes it parsed")
	}
}

// TestReloadWriterInPlace is the same with the real poller and a writer
// that rewrites the file in place in two parts, again and again; a checker
// asks /admin/ with a read-only key all along.
func TestReloadWriterInPlace(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, strings.Replace(servicetest.BaseConfig(keys, ""), "reload_interval: 50ms", "reload_interval: 300ms", 1))
	full, prefix := halfWritten(t, keys)
	stop := make(chan struct{})
	leaks := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				leaks <- n
				return
			default:
			}
			resp, err := h.client.Check(t.Context(), extauthz.BuildCheckRequest(extauthz.HTTPRequest{
				Method: "GET", Host: "a.example.com", Path: "/admin/x", Headers: [][2]string{{"x-api-key", servicetest.KeyAlice}},
			}))
			if err == nil && httpStatusOf(resp) == 200 {
				n++
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for range 8 {
		f, err := os.OpenFile(h.path, os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.WriteString(prefix)
		time.Sleep(30 * time.Millisecond) // the writer is slow
		_, _ = f.WriteString(full[len(prefix):])
		_ = f.Close()
		time.Sleep(350 * time.Millisecond)
	}
	waitFor(t, func() bool { return httpStatusOf(h.check(t, "GET", "x", "/status")) == 200 }, "the complete file applied")
	close(stop)
	if n := <-leaks; n != 0 {
		t.Errorf("a read-only key passed /admin/ %d times: a half-written file was applied", n)
	}
}

// TestReloadWatchesKeyFile: a key removed from its key file (a Secret
// updated out of band) stops being accepted without a SIGHUP, and the log
// names it by subject, never by key or digest.
func TestReloadWatchesKeyFile(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, servicetest.BaseConfig(keys, ""))
	api := func(key string) int {
		return httpStatusOf(h.check(t, "GET", "a.example.com", "/api/x", [2]string{"x-api-key", key}))
	}
	if api(servicetest.KeyAlice) != 200 {
		t.Fatal("alice not accepted at start")
	}
	body, err := os.ReadFile(keys)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(body), "  - subject: admin")
	servicetest.WriteFile(t, keys, "keys:\n"+string(body)[i:])
	waitFor(t, func() bool { return api(servicetest.KeyAlice) == 401 }, "the removed key to be refused")
	if api(servicetest.KeyAdmin) != 200 {
		t.Error("the remaining key stopped working")
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"keys_removed":["keys: subject alice"]`) || !strings.Contains(logs, `"files_changed":["`+keys+`"]`) {
		t.Errorf("the reload log does not name the removed key and the file:\n%s", logs)
	}
	for _, secret := range []string{servicetest.KeyAlice, tokens.HashAPIKey(servicetest.KeyAlice)} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a key or its digest")
		}
	}

	// A broken key file is rejected once, and the old keys keep working.
	servicetest.WriteFile(t, keys, "keys: [{subject: x, sha256: nothex}]\n")
	waitFor(t, func() bool { return strings.Contains(h.logs.String(), "config reload rejected") }, "the broken key file to be rejected")
	if api(servicetest.KeyAdmin) != 200 {
		t.Error("a rejected key file stopped the serving keys")
	}
	time.Sleep(300 * time.Millisecond) // several polls
	if n := strings.Count(h.logs.String(), "config reload rejected"); n != 1 {
		t.Errorf("the broken file was rejected %d times, want once", n)
	}
}

// TestReloadWatchesRateLimitDirectory: a file added to a rate-limit
// directory is picked up by the poller, like the config itself.
func TestReloadWatchesRateLimitDirectory(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	dir := t.TempDir()
	servicetest.WriteFile(t, filepath.Join(dir, "a.yaml"), "domain: other\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 100}\n")
	limited := strings.ReplaceAll(limitedRules, "domain: e2e", "domain: other")
	h := start(t, servicetest.BaseConfig(keys, limited)+rateLimitSection(dir, "memory", ""))
	limitedCheck := func() int {
		return httpStatusOf(h.check(t, "GET", "shop.example.com", "/limited/x", [2]string{"x-api-key", servicetest.KeyAlice}))
	}
	if limitedCheck() != 200 {
		t.Fatal("limited path refused at start")
	}
	servicetest.WriteFile(t, filepath.Join(dir, "a.yaml"), "domain: other\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 1}\n")
	waitFor(t, func() bool { return limitedCheck() == 429 }, "the lowered limit to apply")
	if !strings.Contains(h.logs.String(), `"files_changed":["`+dir+`"]`) {
		t.Errorf("the reload log does not name the directory:\n%s", h.logs.String())
	}
	servicetest.WriteFile(t, filepath.Join(dir, "b.yaml"), "domain: other\ndescriptors: []\n")
	waitFor(t, func() bool { return strings.Contains(h.logs.String(), "config reload rejected") }, "a second file defining the same domain rejected")
}

// TestReloadFailedBuildLeaksNothing: a reload that fails after it built new
// components (a verifier that never becomes ready; a build that fails
// after another one succeeded) stops and releases all of them: the pool
// holds what it held before, and no goroutine is left behind.
func TestReloadFailedBuildLeaksNothing(t *testing.T) {
	ep := jwksResNewEndpoint(t)
	key := jwksResNewKey(t, "k1")
	ep.serve(200, jwksResSet(key))
	ep.up(t)
	hanging := jwksResNewEndpoint(t)
	hanging.hangUp()
	hanging.up(t)
	h := start(t, jwksResConfig(t, jwksResIssuerOpts{URL: ep.url(), RefreshInterval: "1h"}))
	h.svc.mu.Lock()
	h.svc.reloadWait = 500 * time.Millisecond
	h.svc.mu.Unlock()
	before := h.svc.pool.Keys()
	idle := goleak.IgnoreCurrent()

	for _, tc := range []struct{ name, cfg string }{
		{"a new verifier never ready", jwksResConfig(t, jwksResIssuerOpts{URL: hanging.url(), RefreshInterval: "1h", FetchTimeout: "2s"})},
		{"a later build fails", strings.Replace(
			jwksResConfig(t, jwksResIssuerOpts{URL: hanging.url(), RefreshInterval: "1h"}),
			"api_key: {file: \"", "api_key: {file: \"/nonexistent", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servicetest.WriteFile(t, h.path, tc.cfg)
			if err := h.svc.reload("test"); err == nil {
				t.Fatal("the reload succeeded")
			}
			if got := h.svc.pool.Keys(); !slices.Equal(got, before) {
				t.Errorf("pool after a failed reload:\n  %q\nwant\n  %q", got, before)
			}
			goleak.VerifyNone(t, idle)
			if got := httpStatusOf(jwksResCheck(t, h, key.token(""))); got != 200 {
				t.Errorf("the old generation stopped serving: %d", got)
			}
		})
	}
	if got := h.svc.pool.Refs(h.svc.gen.Load().Auths[1].Key); got != 1 {
		t.Errorf("the serving jwt verifier has %d references, want 1", got)
	}
}

// TestReloadWatchesJWKSFile: a key added to a local JWKS file is accepted
// after the poller sees the file settle, and the log names it by kid.
func TestReloadWatchesJWKSFile(t *testing.T) {
	k1, k2 := jwksResNewKey(t, "k1"), jwksResNewKey(t, "k2")
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, jwksResSet(k1), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := jwksResConfig(t, jwksResIssuerOpts{URL: "UNUSED"})
	cfg = strings.Replace(cfg, `jwks_url: "UNUSED"`, `jwks_file: "`+jwks+`"`, 1)
	cfg = strings.Replace(cfg, "reload_interval: -1s", "reload_interval: 50ms", 1)
	h := start(t, cfg)
	if got := httpStatusOf(jwksResCheck(t, h, k1.token(""))); got != 200 {
		t.Fatalf("k1 at start = %d", got)
	}
	if got := httpStatusOf(jwksResCheck(t, h, k2.token(""))); got != 401 {
		t.Fatalf("k2 before it is in the file = %d, want 401", got)
	}
	servicetest.WriteFile(t, jwks, string(jwksResSet(k1, k2)))
	waitFor(t, func() bool { return httpStatusOf(jwksResCheck(t, h, k2.token(""))) == 200 }, "k2 accepted")
	if !strings.Contains(h.logs.String(), `"keys_added":["jwt: `+jwksResIssuer+` kid k2"]`) {
		t.Errorf("the reload log does not name the added kid:\n%s", h.logs.String())
	}
	if got := httpStatusOf(jwksResCheck(t, h, k1.token(""))); got != 200 {
		t.Errorf("k1 after the reload = %d", got)
	}
}

// TestReloadExtendsLogRedaction: a reload that adds an authenticator on a
// new header makes the logger redact that header's name, as start-up does
// for the first config; a removed one stays redacted.
func TestReloadExtendsLogRedaction(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, strings.Replace(servicetest.BaseConfig(keys, ""), "reload_interval: 50ms", "reload_interval: -1s", 1))
	const secret = "redaction-test-secret-value"
	h.svc.logger.Info("probe", "x-partner-key", secret)
	if !strings.Contains(h.logs.String(), secret) {
		t.Fatal("the probe attribute is redacted before the reload: the test proves nothing")
	}
	added := strings.Replace(servicetest.BaseConfig(keys, ""), "policy:", `  - name: partner
    source: {header: X-Partner-Key}
    api_key: {file: "`+keys+`"}
policy:`, 1)
	servicetest.WriteFile(t, h.path, strings.Replace(added, "reload_interval: 50ms", "reload_interval: -1s", 1))
	if err := h.svc.reload("test"); err != nil {
		t.Fatal(err)
	}
	before := strings.Count(h.logs.String(), secret)
	h.svc.logger.Info("probe", "x-partner-key", secret)
	if strings.Count(h.logs.String(), secret) != before || !strings.Contains(h.logs.String(), `"x-partner-key":"[REDACTED]"`) {
		t.Errorf("the new credential header is not redacted after the reload:\n%s", h.logs.String())
	}
	servicetest.WriteFile(t, h.path, strings.Replace(servicetest.BaseConfig(keys, ""), "reload_interval: 50ms", "reload_interval: -1s", 1))
	if err := h.svc.reload("test"); err != nil {
		t.Fatal(err)
	}
	if !h.svc.tel.Redact.Has("x-partner-key") {
		t.Error("a removed authenticator's header is no longer redacted")
	}
}

// TestReloadKeepsRestartOnlySettings: a reload applies the policy and keeps
// every restart-only setting at its running value, with one warning per
// setting that asked for a change.
func TestReloadKeepsRestartOnlySettings(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	limits := limitsFile(t, 100)
	cfg := strings.Replace(servicetest.BaseConfig(keys, limitedRules), "reload_interval: 50ms", "reload_interval: -1s", 1) +
		rateLimitSection(limits, "memory", "")
	h := start(t, cfg)
	next := strings.Replace(cfg, "drain_delay: 100ms", "drain_delay: 7s", 1)
	next = strings.Replace(next, "admin:\n", "admin:\n  pprof: true\n", 1)
	next = strings.Replace(next, "  timeout: 2s\n", "  timeout: 3s\n", 1)
	next = strings.Replace(next, "    - name: admin\n", "    - name: status\n      match: {path: {exact: /status}}\n      action: allow\n    - name: admin\n", 1)
	servicetest.WriteFile(t, h.path, next)
	if err := h.svc.reload("test"); err != nil {
		t.Fatal(err)
	}
	if got := httpStatusOf(h.check(t, "GET", "x", "/status")); got != 200 {
		t.Errorf("the new rule is not served: %d", got)
	}
	c := h.svc.cfg()
	if c.Server.DrainDelay != 100*time.Millisecond || c.Admin.Pprof || c.RateLimit.Timeout != 2*time.Second {
		t.Errorf("restart-only settings changed by a reload: drain_delay %v, pprof %v, rate_limit.timeout %v",
			c.Server.DrainDelay, c.Admin.Pprof, c.RateLimit.Timeout)
	}
	logs := h.logs.String()
	for _, sec := range []string{"server", "admin", "rate_limit (all but files)"} {
		if !strings.Contains(logs, `"msg":"config setting changed; restart to apply it","section":"`+sec+`"`) {
			t.Errorf("no restart warning for %s:\n%s", sec, logs)
		}
	}
	for _, sec := range []string{"redis", "telemetry"} {
		if strings.Contains(logs, `"section":"`+sec+`"`) {
			t.Errorf("a restart warning for the unchanged %s section", sec)
		}
	}
	if !strings.Contains(logs, `"rules_added":["status"]`) {
		t.Errorf("the reload log does not name the added rule:\n%s", logs)
	}
}

// TestReloadWarnsOnRestartOnlyFile: the Redis TLS files are read once; a
// rotated one is noticed and logged as needing a restart.
func TestReloadWarnsOnRestartOnlyFile(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	ca := filepath.Join(t.TempDir(), "ca.pem")
	servicetest.WriteFile(t, ca, "not read until a client is built\n")
	h := start(t, servicetest.BaseConfig(keys, "")+"redis:\n  addrs: [\"127.0.0.1:1\"]\n  tls: {enabled: true, ca_file: \""+ca+"\"}\n")
	servicetest.WriteFile(t, ca, "rotated\n")
	waitFor(t, func() bool {
		return strings.Contains(h.logs.String(), `"msg":"file read only at start changed; restart to apply it","file":"`+ca+`"`)
	}, "the restart warning for the rotated CA file")
}
