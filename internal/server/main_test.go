package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/ext-authz/ext-authz/internal/redislog"
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

// binary builds the real ext-authz binary (cmd/ext-authz) once per test
// run, for the tests that need a process of its own: signals, CPU and
// memory measured apart from the test's.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ext-authz-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "ext-authz")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, "../../cmd/ext-authz").CombinedOutput()
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
