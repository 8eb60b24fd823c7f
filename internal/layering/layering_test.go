package layering

import (
	"encoding/json"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ext-authz/ext-authz"

// rules: a package (or a package tree, with /...) may not import anything
// that starts with one of the forbidden prefixes.
var rules = []struct {
	pkg       string
	forbidden []string
	why       string
}{
	{"tokens/...", []string{module + "/authz", module + "/ratelimit", "github.com/envoyproxy/"},
		"verifiers are a domain core: no Envoy, no pipeline"},
	{"ratelimit", []string{module + "/authz", "github.com/envoyproxy/go-control-plane"},
		"the limiter speaks plain Go types; Envoy's protos stay in ratelimit/envoyconfig and ratelimit/rls"},
	{"ratelimit/memory", []string{module + "/authz", "github.com/envoyproxy/", module + "/ratelimit/redis"}, "a backend knows only its seam"},
	{"ratelimit/redis", []string{module + "/authz", "github.com/envoyproxy/", module + "/ratelimit/memory"}, "a backend knows only its seam"},
	{"authz", []string{"github.com/envoyproxy/", "google.golang.org/grpc", module + "/cmd"},
		"the pipeline is proto-free; Envoy lives in authz/extauthz"},
	{"authz/transport", []string{"github.com/envoyproxy/", "google.golang.org/grpc", "net/http", module + "/cmd"},
		"what the transports share is wire-free: each adapter renders it on its own wire"},
	{"authz/httpauthz", []string{"github.com/envoyproxy/", "google.golang.org/grpc", "google.golang.org/protobuf", module + "/authz/extauthz", module + "/cmd"},
		"the HTTP ext_authz adapter speaks plain HTTP: it shares the gRPC adapter's logic through authz/transport, not its protos"},
	{"internal/...", []string{module + "/authz", module + "/tokens", module + "/ratelimit", module + "/cmd"},
		"internal helpers sit below the domain packages; only the service's assembly (see exceptions) sits above it"},
	{"internal/generation", []string{module + "/cmd", module + "/internal/server", "google.golang.org/grpc", "net/http",
		module + "/authz/extauthz", module + "/authz/httpauthz", module + "/ratelimit/rls", "github.com/envoyproxy/go-control-plane"},
		"compiling a config knows no transport: check-config, serve and reload all call it; serving is internal/server's"},
	{"internal/servicetest", []string{module + "/cmd", module + "/internal/server", module + "/internal/generation", "google.golang.org/grpc"},
		"the test fixtures run the real binary as a process: they link none of the service"},
	{"internal/policytest", []string{module + "/cmd", module + "/internal/server", module + "/internal/cli", "github.com/redis/"},
		"policy tests build the pipeline from a config, as check-config does: they serve nothing and need no Redis"},
	{"internal/server", []string{module + "/cmd"},
		"the server is reusable wiring: only cmd reads flags and the environment"},
	{"internal/telemetry", []string{module + "/internal/generation", module + "/internal/server", "github.com/envoyproxy/", "net/http"},
		"telemetry is built first and injected: it knows no config file, request or transport"},
	{"internal/cli", []string{module + "/cmd", module + "/ratelimit", module + "/internal/redisconf", module + "/internal/server", module + "/internal/generation", "github.com/redis/"},
		"the command-line tools are clients of a running server and token tools: they build no part of the service"},
	{"internal/admission", []string{"google.golang.org/grpc", "github.com/envoyproxy/", "net/http"},
		"admission control is transport-neutral: each transport maps ErrOverloaded to its own answer"},
	{"internal/decisionlog", []string{"google.golang.org/grpc", "github.com/envoyproxy/", "net/http"},
		"the decision log is transport-neutral: a transport fills an Entry"},
	{"internal/pool", []string{"github.com/", "google.golang.org/", "go.opentelemetry.io/"},
		"the pool knows its components only by the capabilities it asserts (Run, Close)"},
	{"internal/filewatch", []string{"github.com/", "google.golang.org/", "go.opentelemetry.io/"},
		"deciding when files changed needs no parser: callers parse the bytes they digested"},
	{"internal/redislog", []string{"github.com/redis/go-redis", "google.golang.org/grpc"},
		"the go-redis logger is implemented by its method set; the Redis client is built in redisconf"},
	{"internal/grpcserver", []string{"github.com/envoyproxy/", "net/http"},
		"the gRPC server parts serve any gRPC service: no Envoy protos, no HTTP transport"},
	{"internal/benchcpu", []string{"github.com/", "google.golang.org/", "go.opentelemetry.io/", module + "/"},
		"the benchmark CPU metric imports the standard library only, so any package's benchmarks can use it"},
	{"internal/gcdefaults", []string{"github.com/", "google.golang.org/", "go.opentelemetry.io/", module + "/"},
		"the collector settings are read from the environment and cgroup files with the standard library alone"},
	{"internal/logcapture", []string{"github.com/", "google.golang.org/", "go.opentelemetry.io/", module + "/"},
		"the test log sink imports the standard library only, so any package's own tests can use it"},
	{"internal/promreg", []string{module + "/", "google.golang.org/", "go.opentelemetry.io/", "net/http"}, "shared by the domain packages: it may import nothing of ours"},
	{"internal/drain", []string{"github.com/", "google.golang.org/", "go.opentelemetry.io/", "net/http"},
		"the drain knows servers only by GracefulStop and Stop: each transport adapts its own"},
}

// exceptions are packages a rule's pattern matches that the rule skips:
// internal/generation and internal/server assemble the service from the
// domain packages, and internal/cli and internal/servicetest (test
// fixtures) mint tokens, so they sit above them (their own rules follow).
var exceptions = map[string][]string{
	"internal/...": {"internal/generation", "internal/server", "internal/cli", "internal/servicetest", "internal/policytest"},
}

type pkgInfo struct {
	ImportPath string
	Imports    []string
	Name       string
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(out)
	for {
		var p pkgInfo
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	return pkgs
}

func matches(pattern, importPath string) bool {
	rel := strings.TrimPrefix(strings.TrimPrefix(importPath, module), "/")
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == base || strings.HasPrefix(rel, base+"/")
	}
	return rel == pattern
}

func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		for _, r := range rules {
			if !matches(r.pkg, p.ImportPath) || slices.ContainsFunc(exceptions[r.pkg], func(e string) bool { return matches(e, p.ImportPath) }) {
				continue
			}
			for _, imp := range p.Imports {
				for _, f := range r.forbidden {
					if (imp == f || strings.HasPrefix(imp, f+"/") || strings.HasSuffix(f, "/") && strings.HasPrefix(imp, f)) && !matches(r.pkg, imp) {
						t.Errorf("%s imports %s: %s", p.ImportPath, imp, r.why)
					}
				}
			}
		}
	}
}

// TestRulesNamePackages: a rule for a package that was renamed or moved
// would pass for ever.
func TestRulesNamePackages(t *testing.T) {
	pkgs := listPackages(t)
	for _, r := range rules {
		found := false
		for _, p := range pkgs {
			found = found || matches(r.pkg, p.ImportPath)
		}
		if !found {
			t.Errorf("rule for %s: no such package", r.pkg)
		}
	}
}

func TestNoGrabBagPackages(t *testing.T) {
	for _, p := range listPackages(t) {
		switch path.Base(p.ImportPath) {
		case "util", "utils", "common", "helpers", "misc":
			t.Errorf("%s: name packages after what they do", p.ImportPath)
		}
	}
}
