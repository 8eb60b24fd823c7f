package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/grpcserver"
	"github.com/ext-authz/ext-authz/internal/redislog"
	"github.com/ext-authz/ext-authz/internal/telemetry"
)

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// TestMain removes the built binary and fails the run if any test left a
// goroutine behind: every server, load run and Redis client a test starts
// must be stopped by it.
func TestMain(m *testing.M) {
	// go-redis logs every failed dial through a global logger; the Redis
	// outage tests cause thousands. The binary throttles them the same way.
	redis.SetLogger(redislog.New(slog.New(slog.DiscardHandler)))
	code := m.Run()
	if buildOnce.path != "" {
		_ = os.RemoveAll(filepath.Dir(buildOnce.path))
	}
	if code == 0 {
		err := goleak.Find()
		if err != nil {
			// go-redis's dial prober (pool.tryDial, started while Redis
			// was down) sleeps a second between attempts and sees that its
			// client was closed only when it wakes: give it that second.
			time.Sleep(1500 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests:\n%v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// binary builds the real ext-authz binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ext-authz-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "ext-authz")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = errors.New(string(out))
		}
	})
	if buildOnce.err != nil {
		t.Fatalf("go build: %v", buildOnce.err)
	}
	return buildOnce.path
}

// proc is the real binary serving a config.
type proc struct {
	cmd       *exec.Cmd
	grpcAddr  string
	adminAddr string
	lines     chan map[string]any
	done      chan error
	// starting is the "starting" log line.
	starting map[string]any
}

// startBinary runs `ext-authz serve` and waits for its "serving" line,
// which names the ports it got.
func startBinary(t *testing.T, cfgPath string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(binary(t), "serve", "--config", cfgPath))
}

// startCmd starts cmd, a prepared `ext-authz serve`, as startBinary does.
func startCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan map[string]any, 1000), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				select {
				case p.lines <- m:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	p.starting = p.waitLine(t, "starting")
	if m := p.waitLine(t, "serving"); m != nil {
		p.grpcAddr, _ = m["grpc_address"].(string)
		p.adminAddr, _ = m["admin_address"].(string)
	}
	return p
}

func (p *proc) waitLine(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m := <-p.lines:
			if m["msg"] == msg {
				return m
			}
		case err := <-p.done:
			t.Fatalf("ext-authz exited before %q: %v", msg, err)
		case <-timeout:
			t.Fatalf("no %q log line within 15s", msg)
		}
	}
}

func TestBinarySignals(t *testing.T) {
	dir := t.TempDir()
	keys := keysFile(t, dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := strings.Replace(baseConfig(keys, ""), "reload_interval: 50ms", "reload_interval: -1s", 1)
	writeFile(t, cfgPath, cfg)
	p := startBinary(t, cfgPath)

	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	p.waitLine(t, "ready")
	if check("/status") == 0 {
		t.Fatal("/status allowed before reload")
	}

	// SIGHUP reloads (polling is off).
	writeFile(t, cfgPath, baseConfig(keys, "    - name: status\n      match: {path: {exact: /status}}\n      action: allow\n"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLine(t, "config reloaded")
	if check("/status") != 0 {
		t.Fatal("/status denied after SIGHUP reload")
	}

	// SIGTERM drains and exits 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLine(t, "draining")
	select {
	case err := <-p.done:
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
	writeFile(t, cfgPath, "policy:\n  rules:\n    - {name: r, action: permit}\n")
	out, err := exec.Command(binary(t), "serve", "--config", cfgPath).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "config.yaml:3: policy.rules[0].action") {
		t.Errorf("output does not name file, line and field:\n%s", out)
	}
}

func TestRecoverUnaryTurnsPanicIntoInternal(t *testing.T) {
	logs := &syncBuffer{}
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
