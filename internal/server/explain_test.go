package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/cli"
	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/tokens"
)

const (
	explainBearer = "explain-bearer-s3cr3t-token"
	explainCookie = "sess-s3cr3t-cookie-value"
)

func withExplain(cfg string) string {
	return strings.Replace(cfg, "admin:\n  address: \"127.0.0.1:0\"\n", "admin:\n  address: \"127.0.0.1:0\"\n  explain: true\n", 1)
}

func postExplain(t *testing.T, h *harness, method, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, h.admin+ExplainPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestExplainOffByDefault: without admin.explain the endpoint does not
// exist, and check --explain says how to turn it on.
func TestExplainOffByDefault(t *testing.T) {
	h := start(t, servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), ""))
	if code, body := postExplain(t, h, http.MethodPost, `{"url":"https://shop.example.com/api/x"}`); code != http.StatusNotFound {
		t.Fatalf("explain off: %d %s, want 404", code, body)
	}
	var out bytes.Buffer
	err := cli.CheckLocal(context.Background(), []string{"--explain", "--admin", strings.TrimPrefix(h.admin, "http://"), "--url", "https://shop.example.com/api/x"}, &out, func(string) string { return "" }, nil)
	var ee *cli.ExitError
	if !errors.As(err, &ee) || ee.Code != cli.ExitFailure || !strings.Contains(ee.Msg, "explain is off on the server") || !strings.Contains(ee.Msg, "admin.explain: true") {
		t.Fatalf("check --explain against a server with explain off: %v", err)
	}
}

// TestExplainEndpoint: the real service with explain on and the memory
// rate-limit backend, asked over a real HTTP client. The explanation
// names the deciding rule and the rules tried before it; no credential
// the request carries (API key, bearer token, session cookie) appears in
// the answer or the logs; explaining spends no quota and counts no
// decision; bad requests get precise 4xx answers.
func TestExplainEndpoint(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, withExplain(servicetest.BaseConfig(keys, limitedRules)+rateLimitSection(limitsFile(t, 3), "memory", "")))

	body := `{"method":"GET","url":"https://shop.example.com/limited/x?q=1",
	  "headers":[["x-api-key","` + servicetest.KeyAlice + `"],["authorization","Bearer ` + explainBearer + `"],["cookie","session=` + explainCookie + `"]],
	  "peer":"10.1.2.3","context_extensions":{"tier":"gold"},"source_principal":"spiffe://cluster.local/ns/a/sa/b"}`
	for range 5 { // more than the quota of 3: explaining must not count
		code, got := postExplain(t, h, http.MethodPost, body)
		if code != http.StatusOK {
			t.Fatalf("explain: %d %s", code, got)
		}
		for _, secret := range []string{servicetest.KeyAlice, explainBearer, explainCookie} {
			if strings.Contains(got, secret) {
				t.Fatalf("the answer carries a credential %q:\n%s", secret, got)
			}
		}
		var out struct {
			Code string
			authz.Explanation
		}
		if err := json.Unmarshal([]byte(got), &out); err != nil {
			t.Fatalf("answer is not an explanation: %v\n%s", err, got)
		}
		if out.Code != "ok" || out.Decision.Rule != "limited" || !out.RulesTried {
			t.Fatalf("explanation: code %s rule %q tried %v\n%s", out.Code, out.Decision.Rule, out.RulesTried, got)
		}
		var names []string
		for _, r := range out.Rules {
			names = append(names, r.Name)
		}
		if strings.Join(names, ",") != "health,public,limited" || out.Rules[0].Matched || !out.Rules[2].Matched {
			t.Fatalf("rules tried %v:\n%s", names, got)
		}
		if out.Identity == nil || out.Identity.Subject != "alice" || len(out.Descriptors) != 1 || out.Decision.Identity != nil || out.Decision.UpstreamHeaders != nil {
			t.Fatalf("identity/descriptors/decision:\n%s", got)
		}
	}
	metrics := get(t, h.admin+"/metrics")
	if strings.Contains(metrics, `rule="limited"`) {
		t.Errorf("explain counted as a decision:\n%s", grepLines(metrics, `rule="limited"`))
	}
	// The quota is whole: three Checks allowed, the fourth 429.
	for i := range 4 {
		resp := h.check(t, "GET", "shop.example.com", "/limited/x", [2]string{"x-api-key", servicetest.KeyAlice})
		if allowed := resp.GetStatus().GetCode() == 0; allowed != (i < 3) {
			t.Fatalf("Check %d after explaining: %v", i+1, resp.GetStatus())
		}
	}

	for _, tt := range []struct {
		name, method, body string
		wantCode           int
		wantMsg            string
	}{
		{"get", http.MethodGet, "", http.StatusMethodNotAllowed, "POST"},
		{"put", http.MethodPut, body, http.StatusMethodNotAllowed, "POST"},
		{"bad json", http.MethodPost, `{"url":`, http.StatusBadRequest, "unexpected EOF"},
		{"empty", http.MethodPost, ``, http.StatusBadRequest, "empty body"},
		{"unknown field", http.MethodPost, `{"url":"https://a.example/","bogus":1}`, http.StatusBadRequest, `unknown field "bogus"`},
		{"trailing", http.MethodPost, `{"url":"https://a.example/"} {}`, http.StatusBadRequest, "trailing data"},
		{"url and host", http.MethodPost, `{"url":"https://a.example/","host":"b"}`, http.StatusBadRequest, "not both"},
		{"relative url", http.MethodPost, `{"url":"/only/a/path?token=` + explainBearer + `"}`, http.StatusBadRequest, "url: not an absolute"},
		{"pseudo header", http.MethodPost, `{"host":"a.example","headers":{":path":"/x"}}`, http.StatusBadRequest, "not a header name"},
		{"bad peer", http.MethodPost, `{"host":"a.example","peer":"nope"}`, http.StatusBadRequest, "peer: not an IP"},
		{"oversized", http.MethodPost, `{"host":"a.example","headers":{"x":"` + strings.Repeat("a", explainMaxBody) + `"}}`, http.StatusRequestEntityTooLarge, "larger than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, got := postExplain(t, h, tt.method, tt.body)
			if code != tt.wantCode || !strings.Contains(got, tt.wantMsg) {
				t.Fatalf("%d %q, want %d containing %q", code, got, tt.wantCode, tt.wantMsg)
			}
			if strings.Contains(got, explainBearer) {
				t.Fatalf("the error quotes the credential: %q", got)
			}
		})
	}

	// check --explain round trip, as text and as JSON, with the exit
	// status of the decision's class.
	admin := strings.TrimPrefix(h.admin, "http://")
	var out bytes.Buffer
	err := cli.CheckLocal(context.Background(), []string{"--explain", "--admin", admin, "--url", "https://shop.example.com/limited/x",
		"-H", "x-api-key: " + servicetest.KeyAdmin, "-H", "authorization: Bearer " + explainBearer}, &out, func(string) string { return "" }, nil)
	if err != nil || !strings.Contains(out.String(), "[2] limited: matched") || !strings.Contains(out.String(), "decision: ok") {
		t.Fatalf("check --explain: %v\n%s", err, out.String())
	}
	out.Reset()
	err = cli.CheckLocal(context.Background(), []string{"--explain", "--json", "--url", "https://shop.example.com/limited/x"}, &out,
		func(k string) string { return map[string]string{cli.EnvAdminAddress: admin}[k] }, nil)
	var ee *cli.ExitError
	if !errors.As(err, &ee) || ee.Code != cli.ExitUnauth || !strings.Contains(out.String(), `"Code": "unauthenticated"`) {
		t.Fatalf("check --explain --json without a key: %v\n%s", err, out.String())
	}
	for _, secret := range []string{servicetest.KeyAdmin, explainBearer, explainCookie} {
		if strings.Contains(out.String(), secret) || strings.Contains(h.logs.String(), secret) {
			t.Fatalf("credential %q in the CLI output or the logs", secret)
		}
	}
	if !strings.Contains(h.logs.String(), "explain served") {
		t.Errorf("no audit line for explain:\n%s", h.logs.String())
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestExplainFollowsReloads: explain answers for the generation serving
// now, and admin.explain is restart-only (a reload that turns it off
// keeps it on, as the rest of admin).
func TestExplainFollowsReloads(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, withExplain(servicetest.BaseConfig(keys, "")))
	const body = `{"host":"shop.example.com","path":"/new/x"}`
	if code, got := postExplain(t, h, http.MethodPost, body); code != http.StatusOK || !strings.Contains(got, `"Code": "forbidden"`) {
		t.Fatalf("before the reload: %d %s", code, got)
	}
	servicetest.WriteFile(t, h.path, servicetest.BaseConfig(keys, "    - name: fresh\n      match: {path: {prefix: /new/}}\n      action: allow\n"))
	if err := h.svc.reload("test"); err != nil {
		t.Fatal(err)
	}
	code, got := postExplain(t, h, http.MethodPost, body)
	if code != http.StatusOK || !strings.Contains(got, `"Code": "ok"`) || !strings.Contains(got, `"Rule": "fresh"`) || !strings.Contains(got, `"RulesTried": true`) {
		t.Fatalf("after a reload (explain off in the file, kept on: restart-only): %d %s", code, got)
	}
}

// TestExplainBusy: at most explainConcurrency explanations run at once;
// one more is refused 503 at once instead of queueing on the admin port.
func TestExplainBusy(t *testing.T) {
	h := start(t, withExplain(servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), "")))
	entered, release := make(chan struct{}, 2*explainConcurrency), make(chan struct{})
	blocking := authz.VerifierFunc(func(ctx context.Context, _ string) (tokens.Principal, error) {
		entered <- struct{}{}
		select {
		case <-release:
			return tokens.Principal{Subject: "s", Method: tokens.MethodAPIKey}, nil
		case <-ctx.Done():
			return tokens.Principal{}, ctx.Err()
		}
	})
	p, err := authz.NewPipeline(authz.Config{Rules: []authz.RuleConfig{{Name: "blocking", Action: authz.ActionAuthenticate, Authenticators: []string{"b"}}}},
		[]*authz.Authenticator{{Name: "b", Source: authz.CredentialSource{Header: "x-api-key"}, Verifier: blocking}}, authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.svc.live.Store(p)
	const body = `{"host":"a.example","headers":{"x-api-key":"k"}}`
	var wg sync.WaitGroup
	codes := make([]int, explainConcurrency)
	for i := range explainConcurrency {
		wg.Go(func() { codes[i], _ = postExplain(t, h, http.MethodPost, body) })
	}
	for range explainConcurrency {
		<-entered // every slot is taken
	}
	code, got := postExplain(t, h, http.MethodPost, body)
	close(release)
	wg.Wait()
	if code != http.StatusServiceUnavailable || !strings.Contains(got, "busy") {
		t.Errorf("one explanation more than %d: %d %q, want 503 busy", explainConcurrency, code, got)
	}
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("explanation %d in flight: %d, want 200", i, c)
		}
	}
}

// TestExplainSpendsNoRedisQuota: with the Redis backend too, explaining
// more times than the quota leaves the whole quota to Checks.
func TestExplainSpendsNoRedisQuota(t *testing.T) {
	srv := redistest.Start(t)
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, withExplain(servicetest.BaseConfig(keys, limitedRules)+"redis:\n  addrs: [\""+srv.Addr+"\"]\n"+rateLimitSection(limitsFile(t, 2), "redis", "")))
	body := `{"url":"https://shop.example.com/limited/x","headers":{"x-api-key":"` + servicetest.KeyAlice + `"}}`
	for i := range 4 {
		if code, got := postExplain(t, h, http.MethodPost, body); code != http.StatusOK || !strings.Contains(got, `"Code": "ok"`) {
			t.Fatalf("explain %d: %d %s", i+1, code, got)
		}
	}
	for i := range 3 {
		resp := h.check(t, "GET", "shop.example.com", "/limited/x", [2]string{"x-api-key", servicetest.KeyAlice})
		if allowed := resp.GetStatus().GetCode() == 0; allowed != (i < 2) {
			t.Fatalf("Check %d after explaining: %v", i+1, resp.GetStatus())
		}
	}
	// Over the limit now: explain reports the 429 the next Check gets, and
	// still counts nothing.
	if code, got := postExplain(t, h, http.MethodPost, body); code != http.StatusOK || !strings.Contains(got, `"Code": "rate_limited"`) {
		t.Fatalf("explain over the limit: %d %s", code, got)
	}
}

// TestExplainEchoesNoCredential: every credential kind the pipeline
// verifies (API key, bearer JWT, session cookie), valid or not, is
// reported present and never appears in the answer or the logs.
func TestExplainEchoesNoCredential(t *testing.T) {
	rs := redistest.Start(t)
	h := start(t, withExplain(fullConfig(t, rs.Addr, quickstartJWKSServer(t).URL, limitsFile(t, 100))))
	jwt := servicetest.MintJWT(t, "jwt-rs256.pem", "dev-rs256-1", "quickstart", "erin")
	const badKey, session = "explain-wrong-api-key-0123", "explain-session-cookie-4567"
	for _, tt := range []struct {
		name    string
		headers string
		want    []string
	}{
		{"valid jwt after a wrong key", `[["x-api-key","` + badKey + `"],["authorization","Bearer ` + jwt + `"],["cookie","udb_session=` + session + `"]]`,
			[]string{`"Code": "ok"`, `"Subject": "erin"`, `"Credential": "present"`}},
		{"mangled jwt", `{"authorization":"Bearer ` + jwt + `x","cookie":"udb_session=` + session + `"}`,
			[]string{`"Credential": "present"`, `"Rule": "app"`}},
		{"jwt in a wrong header", `{"x-api-key":"` + jwt + `"}`, []string{`"Code": "unauthenticated"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, got := postExplain(t, h, http.MethodPost, `{"url":"https://shop.example.com/app/x","headers":`+tt.headers+`}`)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("answer lacks %s:\n%s", w, got)
				}
			}
			for _, secret := range []string{jwt, strings.Split(jwt, ".")[2], badKey, session} {
				if strings.Contains(got, secret) || strings.Contains(h.logs.String(), secret) {
					t.Fatalf("credential %.20q... in the answer or the logs:\n%s", secret, got)
				}
			}
		})
	}
}
