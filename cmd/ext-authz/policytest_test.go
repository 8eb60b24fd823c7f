package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/cli"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// shippedPolicyTests are the policy tests of the quickstart and the
// deploy/ configs (also run by `make policy-tests`).
var shippedPolicyTests = []string{
	"examples/quickstart/policy-tests.yaml",
	"deploy/testdata/policy-tests/base.yaml",
	"deploy/testdata/policy-tests/prod.yaml",
}

// TestShippedPolicyTests runs the shipped policy tests: the quickstart's
// and the cluster configs' policies decide as their tests say.
func TestShippedPolicyTests(t *testing.T) {
	t.Chdir("../..")
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"test", "-v"}, shippedPolicyTests...), &out, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "PASS: ") || strings.Count(out.String(), "  ok    ") < 30 || strings.Contains(out.String(), "FAIL") {
		t.Errorf("output:\n%s", out.String())
	}
}

// TestPolicyTestCommand: the command's exit statuses and output, in
// process: a failing test exits 1 and names it, a broken file exits 1 with
// file:line: field.path, a command-line mistake exits 2.
func TestPolicyTestCommand(t *testing.T) {
	t.Chdir("../..")
	dir := t.TempDir()
	failing := filepath.Join(dir, "failing.yaml")
	servicetest.WriteFile(t, failing, `config: `+filepath.Join(mustAbs(t, "examples/quickstart"), "config.yaml")+`
tests:
  - {name: health, request: {url: "http://example.com/healthz"}, expect: {status: 200}}
  - name: alice is an admin
    request: {url: "https://example.com/admin/x", credential: {authenticator: api-keys, api_key: dev-key-alice}}
    expect: {status: 200}
`)
	broken := filepath.Join(dir, "broken.yaml")
	servicetest.WriteFile(t, broken, "config: x.yaml\ntests:\n  - {name: a, request: {url: \"https://example.com/\"}, expect: {status: 299}}\n")
	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
		wantErr  string
	}{
		{"passes", []string{"test", shippedPolicyTests[0]}, cli.ExitOK, []string{"PASS: 17 passed, 0 failed, 1 of 1 files run"}, ""},
		{"a test fails", []string{"test", failing}, cli.ExitFailure,
			[]string{"FAIL  alice is an admin (" + failing + ":4)", "status: got 403, want 200", "reason=insufficient_scope", "FAIL: 1 passed, 1 failed"}, "1 of 2 tests failed"},
		{"a broken file", []string{"test", broken, shippedPolicyTests[0]}, cli.ExitFailure,
			[]string{"FAIL: 17 passed, 0 failed, 1 of 2 files run"}, broken + ":3: tests[0].expect.status: 299 is not a status"},
		{"--config", []string{"test", "--config", "examples/quickstart/config.yaml", broken}, cli.ExitFailure, nil, "299 is not a status"},
		{"no file", []string{"test"}, cli.ExitUsage, nil, "test needs at least one FILE"},
		{"bad flag", []string{"test", "--nope", "x.yaml"}, cli.ExitUsage, nil, "flag provided but not defined"},
		{"help", []string{"test", "-h"}, cli.ExitOK, []string{"usage: ext-authz test"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tt.args, &out, io.Discard, func(string) string { return "" })
			if code := cli.ExitCode(err); code != tt.wantCode {
				t.Fatalf("exit %d (%v), want %d\n%s", code, err, tt.wantCode, out.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(out.String(), "dev-key-alice") {
				t.Error("the output holds an API key")
			}
		})
	}
}

// TestPolicyTestBinary runs the built binary: a failing test file makes
// the process exit 1 with the failure on stdout and the count on stderr.
func TestPolicyTestBinary(t *testing.T) {
	root := servicetest.Root()
	dir := t.TempDir()
	file := filepath.Join(dir, "t.yaml")
	servicetest.WriteFile(t, file, `config: `+filepath.Join(root, "examples/quickstart/config.yaml")+`
tests:
  - {name: public, request: {url: "https://example.com/public/x"}, expect: {status: 200, rule: public}}
  - {name: wrong, request: {url: "https://example.com/nowhere"}, expect: {status: 200}}
`)
	cmd := exec.Command(servicetest.Binary(t), "test", file)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1\n%s%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "FAIL  wrong") || !strings.Contains(stdout.String(), "FAIL: 1 passed, 1 failed") ||
		!strings.Contains(stderr.String(), "ext-authz: 1 of 2 tests failed") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	// The same file fixed passes: exit 0.
	servicetest.WriteFile(t, file, strings.Replace(mustReadFile(t, file), "nowhere\"}, expect: {status: 200}", "nowhere\"}, expect: {status: 403}", 1))
	cmd = exec.Command(servicetest.Binary(t), "test", file)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fixed file: %v\n%s", err, out)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustReadFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
