package policytest_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/policytest"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// fixture writes a config with every credential kind, a Redis that must
// never be dialled (a listener that counts connections), and in-memory
// rate limits; it returns the directory and the connection counter.
func fixture(t *testing.T) (dir string, dials *atomic.Int64) {
	t.Helper()
	dir = t.TempDir()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dials = &atomic.Int64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = lis.Close(); <-done })
	keys := servicetest.KeysFile(t, dir)
	servicetest.WriteFile(t, filepath.Join(dir, "limits.yaml"), "domain: t\ndescriptors:\n  - key: user\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	q := servicetest.QuickstartKeys()
	servicetest.WriteFile(t, filepath.Join(dir, "config.yaml"), `redis:
  addrs: ["`+lis.Addr().String()+`"]
authenticators:
  - name: keys
    source: {header: x-api-key}
    strip_credential: true
    api_key: {file: "`+keys+`"}
  - name: tickets
    source: {authorization: UDB}
    udb_ticket: {keys: [{id: dev-1, file: "`+q+`ticket-hs256.key"}]}
  - name: jwt
    source: {authorization: Bearer}
    jwt:
      issuers: [{issuer: "https://issuer.quickstart.example", audiences: [quickstart], jwks_file: "`+q+`jwks.json"}]
  - name: session
    source: {cookie: sid}
    udb_session: {key_prefix: "t:", key_encoding: plain}
policy:
  identity_headers: {claims: {team: x-team}}
  rules:
    - name: open
      match: {path: {prefix: /open/}}
      action: allow
    - name: api
      match: {path: {prefix: /api/}}
      action: authenticate
      authenticators: [keys, tickets, jwt, session]
      require: {scopes: [read]}
      rate_limits:
        domain: t
        descriptors:
          - actions: [{identity: {field: subject, descriptor_key: user}}]
          - actions: [{request_headers: {header_name: x-tenant, descriptor_key: tenant}}, {remote_address: {}}]
rate_limit:
  files: ["`+filepath.Join(dir, "limits.yaml")+`"]
  backend: redis
`)
	servicetest.WriteFile(t, filepath.Join(dir, "jwt.pem"), mustRead(t, q+"jwt-rs256.pem"))
	servicetest.WriteFile(t, filepath.Join(dir, "ticket.key"), mustRead(t, q+"ticket-hs256.key"))
	return dir, dials
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const keysHeader = `config: config.yaml
signing_keys:
  jwt: [{issuer: "https://issuer.quickstart.example", file: jwt.pem, kid: dev-rs256-1, audience: quickstart}]
  udb_ticket: [{kid: dev-1, file: ticket.key}]
tests:
`

func run(t *testing.T, dir, body string, opts policytest.Options) (policytest.Summary, string, error) {
	t.Helper()
	path := filepath.Join(dir, "tests.yaml")
	servicetest.WriteFile(t, path, body)
	var out bytes.Buffer
	sum, err := policytest.Run(context.Background(), []string{path}, opts, &out)
	return sum, out.String(), err
}

// TestRunEveryCredentialKind: each shortcut reaches its authenticator
// (header, Authorization scheme, cookie among others), sessions are served
// from memory under the authenticator's key layout, descriptors are
// compared in order, and Redis is never dialled.
func TestRunEveryCredentialKind(t *testing.T) {
	dir, dials := fixture(t)
	sum, out, err := run(t, dir, keysHeader+`
  - name: api key
    request: {url: "https://a.test/api/x", headers: {x-tenant: blue}, client_address: 192.0.2.9, credential: {authenticator: keys, api_key: `+servicetest.KeyAlice+`}}
    expect:
      status: 200
      subject: alice
      authenticator: keys
      upstream_headers: {x-team: payments, X-Auth-Subject: alice}
      removed_headers: [x-api-key]
      rate_limits: {domain: t, descriptors: ["user=alice", "tenant=blue, remote_address=192.0.2.9"]}
  - name: jwt
    request: {url: "https://a.test/api/x", credential: {jwt: {subject: erin, scope: "read write", claims: {team: red}}}}
    expect: {code: ok, subject: erin, authenticator: jwt, upstream_headers: {x-team: red}, rate_limits: {domain: t, descriptors: [user=erin]}}
  - name: jwt without the scope
    request: {url: "https://a.test/api/x", credential: {jwt: {subject: erin}}}
    expect: {status: 403, reason: insufficient_scope, rule: api}
  - name: ticket
    request: {url: "https://a.test/api/x", credential: {udb_ticket: {user: frank, scopes: [read]}}}
    expect: {status: 200, subject: frank, authenticator: tickets}
  - name: expired ticket
    request: {url: "https://a.test/api/x", credential: {udb_ticket: {user: frank, expires_in: -2h}}}
    expect: {status: 401, reason: expired}
  - name: session among other cookies
    request: {url: "https://a.test/api/x", headers: {cookie: "theme=dark"}, credential: {session: {uid: gina, scope: read, claims: {team: green}}}}
    expect: {status: 200, subject: gina, authenticator: session, upstream_headers: {x-team: green}}
  - name: revoked session
    request: {url: "https://a.test/api/x", credential: {session: {uid: gina, scope: read, revoked: true}}}
    expect: {status: 401, reason: revoked}
  - name: raw value
    request: {url: "https://a.test/api/x", credential: {authenticator: jwt, value: not.a.jwt}}
    expect: {status: 401, rule: api, subject: ""}
  - name: anonymous
    request: {method: post, url: "http://a.test/open/x?q=1"}
    expect: {status: 200, rule: open, subject: "", rate_limits: {descriptors: []}}
`, policytest.Options{Verbose: true})
	if err != nil || sum.Failed != 0 || sum.Passed != 9 || sum.Files != 1 {
		t.Fatalf("%+v %v\n%s", sum, err, out)
	}
	if strings.Count(out, "  ok    ") != 9 || !strings.Contains(out, "PASS: 9 passed, 0 failed, 1 of 1 files run") {
		t.Errorf("output:\n%s", out)
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("Redis dialled %d times", n)
	}
}

// TestRunFailures: every kind of expectation can fail, each failure names
// the test and its line, and no credential is printed.
func TestRunFailures(t *testing.T) {
	dir, _ := fixture(t)
	sum, out, err := run(t, dir, keysHeader+`
  - name: passes
    request: {url: "https://a.test/open/"}
    expect: {status: 200}
  - name: everything wrong
    request: {url: "https://a.test/api/x", credential: {authenticator: keys, api_key: `+servicetest.KeyAlice+`}}
    expect:
      status: 403
      code: forbidden
      reason: nope
      rule: open
      subject: bob
      authenticator: jwt
      upstream_headers: {x-team: red, x-missing: v}
      removed_headers: [x-other]
      rate_limits: {domain: u, descriptors: [user=bob]}
`, policytest.Options{})
	if err != nil || sum.Failed != 1 || sum.Passed != 1 {
		t.Fatalf("%+v %v\n%s", sum, err, out)
	}
	for _, want := range []string{
		"FAIL  everything wrong (" + filepath.Join(dir, "tests.yaml") + ":10)",
		"status: got 200, want 403", "code: got ok, want forbidden", `reason: got "", want "nope"`,
		`rule: got "api", want "open"`, `subject: got "alice", want "bob"`, `authenticator: got "keys", want "jwt"`,
		`upstream header x-team: got "payments", want "red"`, `upstream header x-missing: not set`,
		"removed header x-other: not removed", `rate_limits.domain: got "t", want "u"`,
		`rate_limits.descriptors: got ["user=alice"], want ["user=bob"]`,
		"FAIL: 1 passed, 1 failed, 1 of 1 files run",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "  ok    passes") {
		t.Error("a passing test printed without Verbose")
	}
	if strings.Contains(out, servicetest.KeyAlice) {
		t.Error("the output holds the API key")
	}
}

// TestRunFileErrors: mistakes in a test file are file:line: field.path:
// message, and stop that file only.
func TestRunFileErrors(t *testing.T) {
	dir, _ := fixture(t)
	for _, tt := range []struct {
		name, body, want string
	}{
		{"unknown field", keysHeader + "  - name: x\n    request: {url: \"https://a.test/\"}\n    expect: {stauts: 200}\n", `:8: tests[0].expect: unknown field "stauts" (did you mean "status"?)`},
		{"no tests", "config: config.yaml\n", ": tests: at least one test is required"},
		{"no config", "tests:\n  - {name: x, request: {url: \"https://a.test/\"}, expect: {status: 200}}\n", ": config: required (or run with --config)"},
		{"relative url", keysHeader + "  - name: x\n    request: {url: /api/x}\n    expect: {status: 200}\n", `:7: tests[0].request.url: "/api/x" is not an absolute http or https URL`},
		{"no expectation", keysHeader + "  - name: x\n    request: {url: \"https://a.test/\"}\n    expect: {}\n", ":8: tests[0].expect: expect nothing?"},
		{"status no decision has", keysHeader + "  - name: x\n    request: {url: \"https://a.test/\"}\n    expect: {status: 302}\n", ":8: tests[0].expect.status: 302 is not a status"},
		{"bad code", keysHeader + "  - name: x\n    request: {url: \"https://a.test/\"}\n    expect: {code: allowed}\n", `tests[0].expect.code: "allowed" is not one of`},
		{"bad descriptor", keysHeader + "  - name: x\n    request: {url: \"https://a.test/\"}\n    expect: {rate_limits: {domain: t, descriptors: [user]}}\n", `tests[0].expect.rate_limits.descriptors[0]: "user" is not key=value`},
		{"duplicate name", keysHeader + "  - {name: x, request: {url: \"https://a.test/\"}, expect: {status: 200}}\n  - {name: x, request: {url: \"https://a.test/\"}, expect: {status: 200}}\n", `tests[1].name: "x" is also the name of tests[0]`},
		{"two credentials", keysHeader + "  - name: x\n    request: {url: \"https://a.test/\", credential: {api_key: k, value: v, authenticator: keys}}\n    expect: {status: 200}\n", "tests[0].request.credential: set exactly one of"},
		{"api key without authenticator", keysHeader + "  - name: x\n    request: {url: \"https://a.test/\", credential: {api_key: k}}\n    expect: {status: 200}\n", "tests[0].request.credential.authenticator: required with api_key"},
		{"unknown authenticator", keysHeader + "  - name: x\n    request: {url: \"https://a.test/\", credential: {authenticator: nope, api_key: k}}\n    expect: {status: 200}\n", `tests[0].request.credential.authenticator: "nope" is not an authenticator of the config`},
		{"unknown issuer", keysHeader + "  - name: x\n    request: {url: \"https://a.test/\", credential: {jwt: {issuer: \"https://other\", subject: s}}}\n    expect: {status: 200}\n", `tests[0].request.credential.jwt.issuer: "https://other" has no key`},
		{"missing signing key", "config: config.yaml\nsigning_keys: {udb_ticket: [{kid: k, file: none.key}]}\ntests:\n  - {name: x, request: {url: \"https://a.test/\"}, expect: {status: 200}}\n", ":2: signing_keys.udb_ticket[0]: "},
		{"bad client address", keysHeader + "  - name: x\n    request: {url: \"https://a.test/\", client_address: somewhere}\n    expect: {status: 200}\n", `tests[0].request.client_address: "somewhere" is not an IP address`},
		{"config rejected", "config: missing.yaml\ntests:\n  - {name: x, request: {url: \"https://a.test/\"}, expect: {status: 200}}\n", "missing.yaml: no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sum, out, err := run(t, dir, tt.body, policytest.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), filepath.Join(dir, "tests.yaml")+":") {
				t.Errorf("error %q does not start with the test file", err)
			}
			if sum.Files != 0 || !strings.Contains(out, "FAIL: 0 passed, 0 failed, 0 of 1 files run") {
				t.Errorf("%+v\n%s", sum, out)
			}
		})
	}
}

// TestRunConfigOptions: --config replaces the file's config, paths and
// Remap map absolute paths, env answers ${NAME}.
func TestRunConfigOptions(t *testing.T) {
	dir, _ := fixture(t)
	cfg := mustRead(t, filepath.Join(dir, "config.yaml"))
	keysFile := filepath.Join(dir, "keys.yaml")
	mounted := strings.ReplaceAll(cfg, keysFile, "/etc/keys/keys.yaml")
	mounted = strings.Replace(mounted, "  - name: keys\n", "  - name: ${KEYS_NAME}\n", 1)
	mounted = strings.ReplaceAll(mounted, "authenticators: [keys, ", "authenticators: [api, ")
	servicetest.WriteFile(t, filepath.Join(dir, "mounted.yaml"), mounted)
	body := "config: does-not-exist.yaml\npaths: {/etc/keys: .}\nenv: {KEYS_NAME: api}\ntests:\n" +
		"  - {name: x, request: {url: \"https://a.test/api/\", credential: {authenticator: api, api_key: " + servicetest.KeyAdmin + "}}, expect: {status: 200, subject: admin}}\n"
	sum, out, err := run(t, dir, body, policytest.Options{Config: filepath.Join(dir, "mounted.yaml")})
	if err != nil || sum.Passed != 1 {
		t.Fatalf("%+v %v\n%s", sum, err, out)
	}
	// Without the paths the mounted config's key file is not found.
	body = strings.Replace(body, "paths: {/etc/keys: .}\n", "", 1)
	if _, _, err := run(t, dir, body, policytest.Options{Config: filepath.Join(dir, "mounted.yaml")}); err == nil || !strings.Contains(err.Error(), "/etc/keys/keys.yaml") {
		t.Fatalf("without paths: %v", err)
	}
	// Remap (the command's --map-path) does what paths does.
	var pm generation.PathMap
	if err := pm.Set("/etc/keys=" + dir); err != nil {
		t.Fatal(err)
	}
	if sum, out, err := run(t, dir, body, policytest.Options{Config: filepath.Join(dir, "mounted.yaml"), Remap: pm.Apply}); err != nil || sum.Passed != 1 {
		t.Fatalf("--map-path: %+v %v\n%s", sum, err, out)
	}
}

// TestRunFetchesJWKS: an issuer whose keys are served over HTTP is
// started and waited for, and its tokens verify.
func TestRunFetchesJWKS(t *testing.T) {
	dir := t.TempDir()
	jwks := mustRead(t, servicetest.QuickstartKeys()+"jwks.json")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(jwks)) }))
	defer srv.Close()
	servicetest.WriteFile(t, filepath.Join(dir, "config.yaml"), `authenticators:
  - name: jwt
    source: {authorization: Bearer}
    jwt:
      issuers: [{issuer: "https://issuer.quickstart.example", audiences: [quickstart], jwks_url: "`+srv.URL+`"}]
policy:
  rules:
    - {name: api, match: {path: {prefix: /}}, action: authenticate, authenticators: [jwt]}
`)
	servicetest.WriteFile(t, filepath.Join(dir, "jwt.pem"), mustRead(t, servicetest.QuickstartKeys()+"jwt-rs256.pem"))
	sum, out, err := run(t, dir, `config: config.yaml
signing_keys:
  jwt: [{issuer: "https://issuer.quickstart.example", file: jwt.pem, kid: dev-rs256-1, audience: quickstart}]
tests:
  - {name: fetched, request: {url: "https://a.test/x", credential: {jwt: {subject: erin}}}, expect: {status: 200, subject: erin}}
`, policytest.Options{})
	if err != nil || sum.Passed != 1 {
		t.Fatalf("%+v %v\n%s", sum, err, out)
	}
}

// TestRunCandidate: with Candidate the tests run against the config's
// policy_candidate; without one, the file is not run.
func TestRunCandidate(t *testing.T) {
	dir, _ := fixture(t)
	servicetest.WriteFile(t, filepath.Join(dir, "candidate.yaml"), `policy:
  rules:
    - {name: open-v2, match: {path: {prefix: /open/}}, action: deny}
`)
	cfg := filepath.Join(dir, "config.yaml")
	servicetest.WriteFile(t, cfg, mustRead(t, cfg)+"policy_candidate: {file: \""+filepath.Join(dir, "candidate.yaml")+"\"}\n")
	body := keysHeader + "  - {name: open, request: {url: \"https://a.test/open/\"}, expect: {status: 403, rule: open-v2}}\n"
	if sum, out, err := run(t, dir, body, policytest.Options{Candidate: true}); err != nil || sum.Passed != 1 {
		t.Fatalf("candidate: %+v %v\n%s", sum, err, out)
	}
	if sum, out, err := run(t, dir, body, policytest.Options{}); err != nil || sum.Failed != 1 || !strings.Contains(out, `rule: got "open", want "open-v2"`) {
		t.Fatalf("live: %+v %v\n%s", sum, err, out)
	}
	servicetest.WriteFile(t, cfg, strings.Replace(mustRead(t, cfg), "policy_candidate:", "# policy_candidate:", 1))
	if _, _, err := run(t, dir, body, policytest.Options{Candidate: true}); err == nil || !strings.Contains(err.Error(), "no policy_candidate") {
		t.Fatalf("without a candidate: %v", err)
	}
}
