package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/internal/cli"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// runBin runs the built binary in dir with env added, and returns its
// stdout, stderr and exit status.
func runBin(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(servicetest.Binary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", args, err)
	}
	return o.String(), e.String(), code
}

var stampedOnce struct {
	sync.Once
	path string
	err  error
}

// stampedVersion is what stampedBinary is stamped with.
const stampedVersion = "v9.8.7-test"

// stampedBinary is the binary built as the Makefile builds it, with
// -X main.version (removed with the plain one in TestMain).
func stampedBinary(t *testing.T) string {
	t.Helper()
	plain := servicetest.Binary(t) // owns the directory TestMain removes
	stampedOnce.Do(func() {
		stampedOnce.path = filepath.Join(filepath.Dir(plain), "ext-authz-stamped")
		out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+stampedVersion, "-o", stampedOnce.path, ".").CombinedOutput()
		if err != nil {
			stampedOnce.err = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if stampedOnce.err != nil {
		t.Fatalf("go build: %v", stampedOnce.err)
	}
	return stampedOnce.path
}

// startQuickstart serves the quickstart config from the repository root,
// on free ports chosen by the flag and the environment overrides.
func startQuickstart(t *testing.T) *servicetest.Proc {
	t.Helper()
	cmd := exec.Command(servicetest.Binary(t), "serve", "--config", "examples/quickstart/config.yaml", "--grpc-address", "127.0.0.1:0")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), cli.EnvAdminAddress+"=127.0.0.1:0", cli.EnvGRPCAddress+"=127.0.0.1:1") // the flag wins
	p := servicetest.StartCmd(t, cmd)
	p.WaitLine(t, "ready")
	t.Cleanup(func() {
		_ = p.Cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.Done:
		case <-time.After(30 * time.Second):
			_ = p.Cmd.Process.Kill()
		}
	})
	if !strings.HasPrefix(p.GRPCAddr, "127.0.0.1:") || p.GRPCAddr == "127.0.0.1:1" || !strings.HasPrefix(p.AdminAddr, "127.0.0.1:") {
		t.Fatalf("overrides not applied: grpc %q admin %q", p.GRPCAddr, p.AdminAddr)
	}
	return p
}

// TestCLICheckExitCodes runs the real `check` against the real server: each
// denial class has its own documented exit status.
func TestCLICheckExitCodes(t *testing.T) {
	p := startQuickstart(t)
	for _, tt := range []struct {
		name string
		give []string
		want int
		out  string
	}{
		{"allowed", []string{"--url", "https://example.com/api/orders", "-H", "x-api-key: dev-key-alice"}, 0, "ALLOW rule=api subject=alice"},
		{"no rule: 403", []string{"--url", "https://other.org/"}, 4, "DENY 403 rule= reason=no_matching_rule"},
		{"no credential: 401", []string{"--url", "https://example.com/api/orders"}, 3, "DENY 401 rule=api reason=missing_credential"},
		{"bad credential: 401", []string{"--url", "https://example.com/api/orders", "-H", "x-api-key: wrong"}, 3, "DENY 401"},
		{"no scope: 403", []string{"--url", "https://example.com/admin/users", "-H", "x-api-key: dev-key-alice"}, 4, "DENY 403 rule=admin reason=insufficient_scope"},
		{"json keeps the code", []string{"--json", "--url", "https://other.org/"}, 4, `"deniedResponse"`},
		{"bad URL", []string{"--url", "nohost"}, 2, ""},
		{"unknown flag", []string{"--frob"}, 2, ""},
		{"stray argument", []string{"extra"}, 2, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runBin(t, ".", nil, append([]string{"check", "--addr", p.GRPCAddr}, tt.give...)...)
			if code != tt.want {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.want, out, errOut)
			}
			if !strings.Contains(out, tt.out) {
				t.Errorf("stdout %q does not contain %q", out, tt.out)
			}
			if code >= 3 && errOut != "" {
				t.Errorf("a denial printed on stderr: %q", errOut)
			}
		})
	}
	// The rate-limited class: search allows 2 a second per user, so of 4
	// quick calls the last is over unless a second began in between (then
	// try again).
	var codes []int
	for attempt := 0; attempt < 5 && (len(codes) == 0 || codes[3] != 5); attempt++ {
		codes = nil
		for range 4 {
			_, _, code := runBin(t, ".", []string{cli.EnvGRPCAddress + "=" + p.GRPCAddr}, "check", "--url", "https://example.com/api/search", "-H", "x-api-key: dev-key-alice")
			codes = append(codes, code)
		}
	}
	if codes[3] != 5 || (codes[0] != 0 && codes[0] != 5) {
		t.Errorf("search x4 via $%s: exit codes %v, want 5 (429) last", cli.EnvGRPCAddress, codes)
	}

	// No server: exit 1 with the transport error on stderr.
	_, errOut, code := runBin(t, ".", nil, "check", "--addr", "127.0.0.1:1", "--timeout", "2s")
	if code != 1 || !strings.Contains(errOut, "Unavailable") {
		t.Errorf("no server: exit %d, stderr %q; want 1 and Unavailable", code, errOut)
	}
}

// TestCLIRateLimit runs the real `ratelimit` (ShouldRateLimit) client.
func TestCLIRateLimit(t *testing.T) {
	p := startQuickstart(t)
	rl := func(args ...string) (string, int) {
		out, errOut, code := runBin(t, ".", nil, append([]string{"ratelimit", "--addr", p.GRPCAddr}, args...)...)
		return out + errOut, code
	}
	// route=search,user=U: 2 a second. Two hits fill it, the next is
	// over, unless a second began in between (then a new user tries again).
	var outs []string
	var codes []int
	for attempt := 0; attempt < 5 && (len(codes) == 0 || codes[1] != 5); attempt++ {
		d := fmt.Sprintf("route=search,user=rl-bob%d", attempt)
		out1, code1 := rl("--domain", "quickstart", "--descriptor", d, "--hits", "2")
		out2, code2 := rl("--domain", "quickstart", "--descriptor", d)
		outs, codes = []string{out1, out2}, []int{code1, code2}
	}
	if codes[0] != 0 || !strings.Contains(outs[0], "OK\n  [route=search,user=rl-bob") || !strings.Contains(outs[0], "] OK limit=2/second remaining=0") {
		t.Errorf("filling hit: exit %d\n%s", codes[0], outs[0])
	}
	if codes[1] != 5 || !strings.Contains(outs[1], "OVER_LIMIT\n  [route=search,user=rl-bob") || !strings.Contains(outs[1], "] OVER_LIMIT limit=2/second remaining=0") {
		t.Errorf("over-limit hit: exit %d, want 5\n%s", codes[1], outs[1])
	}
	if out, code := rl("--domain", "quickstart", "--descriptor", "route=api,user=rl-carol", "--hits", "61"); code != 5 {
		t.Errorf("61 hits of 60/minute: exit %d\n%s", code, out)
	}
	out, code := rl("--domain", "quickstart", "--descriptor", "route=api,user=rl-dave", "--json")
	var resp struct{ OverallCode string }
	if err := json.Unmarshal([]byte(out), &resp); err != nil || code != 0 || resp.OverallCode != "OK" {
		t.Errorf("--json: exit %d, %v\n%s", code, err, out)
	}
	for _, args := range [][]string{
		{"--descriptor", "a=b"},                       // no domain
		{"--domain", "quickstart"},                    // no descriptor
		{"--domain", "d", "--descriptor", "=v"},       // entry without key
		{"--domain", "d", "--descriptor", "a=b", "x"}, // stray argument
	} {
		if out, code := rl(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, out)
		}
	}
	if out, code := rl("--addr", "127.0.0.1:1", "--domain", "d", "--descriptor", "a=b"); code != 1 {
		t.Errorf("no server: exit %d, want 1\n%s", code, out)
	}
}

// TestCLIHelpAndVersion: -h exits 0 on every command and prints its usage
// on stdout; --version and version print the stamped version.
func TestCLIHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"},
		{"serve", "-h"}, {"serve", "--help"}, {"check-config", "-h"}, {"check", "-h"}, {"ratelimit", "-h"},
		{"token", "-h"}, {"token", "mint", "-h"}, {"token", "jwks", "-h"}, {"version", "-h"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut, func(string) string { return "" })
		if code := cli.ExitCode(err); code != 0 || !strings.Contains(out.String(), "usage") {
			t.Errorf("%v: exit %d (%v), stdout %q", args, code, err, out.String())
		}
	}
	// Usage errors: status 2, pointing at the help.
	for _, args := range [][]string{
		{}, {"frob"}, {"serve"}, {"serve", "--config", "x", "--frob"}, {"check-config"}, {"token"}, {"token", "frob"},
		{"version", "extra"}, {"check", "--timeout", "soon"},
	} {
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" })
		if code := cli.ExitCode(err); code != 2 {
			t.Errorf("%v: exit %d (%v), want 2", args, code, err)
		}
	}
	// The real binary, stamped as the Makefile stamps it.
	bin := stampedBinary(t)
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || string(out) != "ext-authz "+stampedVersion+"\n" {
			t.Errorf("%v: %q, %v", args, out, err)
		}
	}
	out, err := exec.Command(bin, "serve", "-h").Output()
	if err != nil || !strings.Contains(string(out), "--grpc-address") || !strings.Contains(string(out), cli.EnvGRPCAddress) {
		t.Errorf("serve -h: %v\n%s", err, out)
	}
}

// TestCLIServeOverrideErrors: a bad override is a usage error naming its
// source, before anything listens.
func TestCLIServeOverrideErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--grpc-address", "nocolon"}, nil, "--grpc-address"},
		{nil, map[string]string{cli.EnvAdminAddress: "nocolon"}, cli.EnvAdminAddress},
	} {
		args := append([]string{"serve", "--config", "../../examples/quickstart/config.yaml"}, tt.args...)
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}, func(k string) string { return tt.env[k] })
		if cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v %v: %v, want exit 2 naming %s", tt.args, tt.env, err, tt.want)
		}
	}
}

// TestCheckConfigDeployConfigs validates every service config shipped in
// deploy/ on this workstation, as the README tells an operator to: the
// cluster's mounts mapped to the directories their ConfigMap and Secret
// are generated from, and the Secret-backed variables left unset.
func TestCheckConfigDeployConfigs(t *testing.T) {
	t.Chdir("../..")
	files, _ := filepath.Glob("deploy/overlays/*/config.yaml")
	files = append([]string{"deploy/base/config.yaml"}, files...)
	if len(files) < 2 {
		t.Fatalf("found only %v", files)
	}
	maps := []string{
		"--map-path", "/etc/ext-authz-keys=deploy/overlays/dev/dev-only-keys",
		"--map-path", "/etc/ext-authz-ratelimit=deploy/base/ratelimit",
	}
	var out bytes.Buffer
	err := run(context.Background(), append(append([]string{"check-config", "--allow-unset-env"}, maps...), files...), &out, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatalf("check-config over %v: %v", files, err)
	}
	for _, f := range files {
		if !strings.Contains(out.String(), f+": ok") {
			t.Errorf("no verdict for %s in:\n%s", f, out.String())
		}
	}
	if !strings.Contains(out.String(), "deploy/overlays/prod/config.yaml: ok (unset: REDIS_PASSWORD)") {
		t.Errorf("the prod Redis password placeholder is not listed:\n%s", out.String())
	}

	// Without the options the same files fail, as they would on any
	// workstation: the flags are what makes the check possible.
	err = run(context.Background(), []string{"check-config", "deploy/overlays/prod/config.yaml"}, io.Discard, io.Discard, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "REDIS_PASSWORD") {
		t.Errorf("without --allow-unset-env: %v", err)
	}
	err = run(context.Background(), []string{"check-config", "--allow-unset-env", "deploy/base/config.yaml"}, io.Discard, io.Discard, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "/etc/ext-authz-") {
		t.Errorf("without --map-path: %v", err)
	}

	// --base-dir: the same check over a tree laid out as the pod's.
	root := t.TempDir()
	for from, to := range map[string]string{"deploy/overlays/dev/dev-only-keys": "etc/ext-authz-keys", "deploy/base/ratelimit": "etc/ext-authz-ratelimit"} {
		if err := os.CopyFS(filepath.Join(root, to), os.DirFS(from)); err != nil {
			t.Fatal(err)
		}
	}
	err = run(context.Background(), []string{"check-config", "--allow-unset-env", "--base-dir", root, "deploy/base/config.yaml", "deploy/overlays/prod/config.yaml"}, io.Discard, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Errorf("--base-dir: %v", err)
	}
}

// TestOperatorMetrics runs the stamped binary and checks, over a real
// scrape, what an operator's first dashboard needs: the version in
// build_info and in the start-up log line, the config's load time and
// hash, reload counters present from start, gRPC server series, and a
// rejected reload that logs every error it found.
func TestOperatorMetrics(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(root, "examples/quickstart/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	servicetest.WriteFile(t, cfgPath, string(good))
	before := time.Now()
	cmd := exec.Command(stampedBinary(t), "serve", "--config", cfgPath, "--grpc-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0")
	cmd.Dir = root // the quickstart's key paths are relative to it
	p := servicetest.StartCmd(t, cmd)
	t.Cleanup(func() {
		_ = p.Cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.Done:
		case <-time.After(30 * time.Second):
			_ = p.Cmd.Process.Kill()
		}
	})
	p.WaitLine(t, "ready")
	if v, _ := p.Starting["version"].(string); v != stampedVersion {
		t.Errorf("starting line version = %q, want %q", v, stampedVersion)
	}
	admin := "http://" + p.AdminAddr
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

	fams := servicetest.Scrape(t, admin)
	if v, ok := servicetest.Value(fams, "ext_authz_build_info", map[string]string{"version": stampedVersion, "goversion": runtime.Version()}); !ok || v != 1 {
		t.Errorf("build_info{version=%s} = %v (present %v)", stampedVersion, v, ok)
	}
	for _, r := range []string{"success", "failure"} {
		if v, ok := servicetest.Value(fams, "ext_authz_config_reloads_total", map[string]string{"result": r}); !ok || v != 0 {
			t.Errorf("reloads_total{result=%s} before any reload = %v (present %v), want 0", r, v, ok)
		}
	}
	if v, ok := servicetest.Value(fams, "ext_authz_config_hash", map[string]string{"sha256": sum(good)}); !ok || v != 1 {
		t.Errorf("config_hash{sha256=sha256sum of the file} = %v (present %v)", v, ok)
	}
	ts, ok := servicetest.Value(fams, "ext_authz_config_last_reload_success_timestamp_seconds", nil)
	if !ok || ts < float64(before.Unix()) || ts > float64(time.Now().Unix()+1) {
		t.Errorf("config load timestamp %v, want between start and now", ts)
	}

	// gRPC server series: every code of every method from start; a
	// Check counted under its code.
	if _, _, code := runBin(t, ".", nil, "check", "--addr", p.GRPCAddr, "--url", "https://other.org/"); code != 4 {
		t.Fatalf("check exit %d", code)
	}
	fams = servicetest.Scrape(t, admin)
	check := map[string]string{"grpc_service": "envoy.service.auth.v3.Authorization", "grpc_method": "Check", "grpc_type": "unary"}
	for code, want := range map[string]float64{"OK": 1, "Internal": 0, "ResourceExhausted": 0, "Unavailable": 0} {
		l := map[string]string{"grpc_code": code}
		for k, v := range check {
			l[k] = v
		}
		if v, ok := servicetest.Value(fams, "grpc_server_handled_total", l); !ok || v != want {
			t.Errorf("grpc_server_handled_total%v = %v (present %v), want %v", l, v, ok, want)
		}
	}
	if v, ok := servicetest.Value(fams, "grpc_server_handling_seconds", check); !ok || v != 1 {
		t.Errorf("grpc_server_handling_seconds count = %v (present %v), want 1", v, ok)
	}
	if v, ok := servicetest.Value(fams, "grpc_server_started_total", map[string]string{"grpc_method": "ShouldRateLimit"}); !ok || v != 0 {
		t.Errorf("ShouldRateLimit started = %v (present %v), want 0 from start", v, ok)
	}

	// A rejected reload logs all of its errors and counts one failure;
	// the hash stays the serving file's.
	bad := strings.Replace(string(good), "  drain_delay: 1s\n", "  drain_delay: -1s\n  max_recv_message_bytes: 10\n", 1)
	bad += "telemetry:\n  log: {level: loud}\n"
	servicetest.WriteFile(t, cfgPath, bad)
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m := p.WaitLine(t, "config reload rejected")
	msg, _ := m["error"].(string)
	errs, _ := m["errors"].([]any)
	for _, want := range []string{"server.drain_delay", "server.max_recv_message_bytes", "telemetry.log.level"} {
		if !strings.Contains(msg, want) {
			t.Errorf("rejected reload's error does not name %s: %q", want, msg)
		}
		found := false
		for _, e := range errs {
			s, _ := e.(string)
			found = found || strings.Contains(s, want)
		}
		if !found {
			t.Errorf("errors list %q has no entry for %s", errs, want)
		}
	}
	if n, _ := m["error_count"].(float64); int(n) != len(errs) || n < 3 {
		t.Errorf("error_count %v, errors %d", m["error_count"], len(errs))
	}
	fams = servicetest.Scrape(t, admin)
	if v, _ := servicetest.Value(fams, "ext_authz_config_reloads_total", map[string]string{"result": "failure"}); v != 1 {
		t.Errorf("failure count %v after a rejected reload", v)
	}
	if _, ok := servicetest.Value(fams, "ext_authz_config_hash", map[string]string{"sha256": sum(good)}); !ok {
		t.Error("the hash changed to a rejected file's")
	}

	// A good reload: success counted, new hash, the old hash gone.
	next := strings.Replace(string(good), "policy:", "# a comment changes the hash\npolicy:", 1)
	servicetest.WriteFile(t, cfgPath, next)
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, "config reloaded")
	fams = servicetest.Scrape(t, admin)
	if v, _ := servicetest.Value(fams, "ext_authz_config_reloads_total", map[string]string{"result": "success"}); v != 1 {
		t.Errorf("success count %v after a good reload", v)
	}
	if v, ok := servicetest.Value(fams, "ext_authz_config_hash", map[string]string{"sha256": sum([]byte(next))}); !ok || v != 1 {
		t.Error("config_hash does not name the reloaded file")
	}
	if _, ok := servicetest.Value(fams, "ext_authz_config_hash", map[string]string{"sha256": sum(good)}); ok {
		t.Error("the old hash is still exported")
	}
}
