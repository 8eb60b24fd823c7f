package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/grpcserver"
	"github.com/ext-authz/ext-authz/internal/logcapture"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/internal/telemetry"
)

// TestMain fails the run if any test left a goroutine behind, and removes
// the binary the tests built (servicetest.Main).
func TestMain(m *testing.M) { servicetest.Main(m) }

func TestBinarySignals(t *testing.T) {
	dir := t.TempDir()
	keys := servicetest.KeysFile(t, dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := strings.Replace(servicetest.BaseConfig(keys, ""), "reload_interval: 50ms", "reload_interval: -1s", 1)
	servicetest.WriteFile(t, cfgPath, cfg)
	p := servicetest.StartBinary(t, cfgPath)

	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	check := func(path string) int32 {
		t.Helper()
		resp, err := client.Check(context.Background(), extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "h", Path: path}))
		if err != nil {
			t.Fatalf("Check %s: %v", path, err)
		}
		return resp.GetStatus().GetCode()
	}
	p.WaitLine(t, "ready")
	if check("/status") == 0 {
		t.Fatal("/status allowed before reload")
	}

	// SIGHUP reloads (polling is off).
	servicetest.WriteFile(t, cfgPath, servicetest.BaseConfig(keys, "    - name: status\n      match: {path: {exact: /status}}\n      action: allow\n"))
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, "config reloaded")
	if check("/status") != 0 {
		t.Fatal("/status denied after SIGHUP reload")
	}

	// SIGTERM drains and exits 0.
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, "draining")
	select {
	case err := <-p.Done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15s after SIGTERM")
	}
}

func TestBinaryBadConfigExitsNonZero(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	servicetest.WriteFile(t, cfgPath, "policy:\n  rules:\n    - {name: r, action: permit}\n")
	out, err := exec.Command(servicetest.Binary(t), "serve", "--config", cfgPath).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "config.yaml:3: policy.rules[0].action") {
		t.Errorf("output does not name file, line and field:\n%s", out)
	}
}

func TestRecoverUnaryTurnsPanicIntoInternal(t *testing.T) {
	logs := &logcapture.Buffer{}
	interceptor := grpcserver.RecoverUnary(telemetry.NewRedactingLogger(logs, telemetry.LogConfig{Level: "info", Format: "json"}, nil))
	_, err := interceptor(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/Y"},
		func(context.Context, any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("err = %v, want Internal", err)
	}
	if !strings.Contains(logs.String(), `"msg":"panic in handler"`) || !strings.Contains(logs.String(), "boom") {
		t.Errorf("panic not logged: %s", logs.String())
	}
}

// TestBinaryGCSettings: serve sets GOGC=400 when the environment has no
// GOGC, keeps an operator's GOGC and GOMEMLIMIT as given, and reports both
// and their source in the starting line.
func TestBinaryGCSettings(t *testing.T) {
	dir := t.TempDir()
	keys := servicetest.KeysFile(t, dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	servicetest.WriteFile(t, cfgPath, strings.Replace(servicetest.BaseConfig(keys, ""), "reload_interval: 50ms", "reload_interval: -1s", 1))
	tests := []struct {
		name                     string
		env                      []string
		wantGOGC                 float64
		wantGOGCSource           string
		wantLimit, wantLimitFrom string
	}{
		{name: "defaults", wantGOGC: 400, wantGOGCSource: "default"},
		{name: "operator's", env: []string{"GOGC=150", "GOMEMLIMIT=100MiB"},
			wantGOGC: 150, wantGOGCSource: "GOGC", wantLimit: "100MiB", wantLimitFrom: "GOMEMLIMIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(servicetest.Binary(t), "serve", "--config", cfgPath)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, tt.env...)
			p := servicetest.StartCmd(t, cmd)
			if got := p.Starting["gogc"]; got != tt.wantGOGC {
				t.Errorf("gogc = %v, want %v", got, tt.wantGOGC)
			}
			if got := p.Starting["gogc_source"]; got != tt.wantGOGCSource {
				t.Errorf("gogc_source = %v, want %s", got, tt.wantGOGCSource)
			}
			if tt.wantLimit != "" {
				if got := p.Starting["memory_limit"]; got != tt.wantLimit {
					t.Errorf("memory_limit = %v, want %s", got, tt.wantLimit)
				}
				if got := p.Starting["memory_limit_source"]; got != tt.wantLimitFrom {
					t.Errorf("memory_limit_source = %v, want %s", got, tt.wantLimitFrom)
				}
			} else if p.Starting["memory_limit_source"] == nil {
				t.Error("no memory_limit_source in the starting line")
			}
			if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := <-p.Done; err != nil {
				t.Fatalf("exit: %v", err)
			}
		})
	}
}

// TestBinaryCollectsStartupGarbage: loading a large policy leaves tens of
// MB of garbage (YAML trees, decoded structs), and the collector's next
// goal is GOGC% of what was live while loading. serve collects once before
// it is ready, so the goal follows the heap the service keeps: without it a
// 10,000-rule server's first requests grew the heap to ~160 MB before any
// collection (loadtest/RESULTS.md, "where the 1.13× went").
func TestBinaryCollectsStartupGarbage(t *testing.T) {
	dir := t.TempDir()
	keys := servicetest.KeysFile(t, dir)
	var rules strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&rules, "    - name: filler-%d\n      match: {hosts: [svc%d.example.com], path: {prefix: /p%d/}}\n      action: allow\n", i, i/10, i)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	servicetest.WriteFile(t, cfgPath, strings.Replace(servicetest.BaseConfig(keys, rules.String()), "reload_interval: 50ms", "reload_interval: -1s", 1))
	cmd := exec.Command(servicetest.Binary(t), "serve", "--config", cfgPath)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "GODEBUG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// The Deployment's limit, far above what this server needs: the goal
	// is then GOGC's alone (the default 400).
	cmd.Env = append(cmd.Env, "GOMEMLIMIT=230MiB")
	p := servicetest.StartCmd(t, cmd)
	defer func() {
		if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Error(err)
		}
		if err := <-p.Done; err != nil {
			t.Errorf("exit: %v", err)
		}
	}()
	p.WaitLine(t, "ready")
	fams := servicetest.Scrape(t, "http://"+p.AdminAddr)
	goal, ok := servicetest.Value(fams, "go_memstats_next_gc_bytes", nil)
	if !ok {
		t.Fatal("no go_memstats_next_gc_bytes on /metrics")
	}
	// Kept: ~9 MB with GOGC=400, a goal of ~45 MB. Loading's live peak
	// (~33 MB) would give ~165 MB.
	const maxGoal = 100 << 20
	if goal > maxGoal {
		t.Errorf("heap goal once ready = %.0f MiB, want at most %d MiB: start-up garbage sets the first goal", goal/(1<<20), maxGoal>>20)
	}
	t.Logf("heap goal once ready: %.1f MiB", goal/(1<<20))
}
