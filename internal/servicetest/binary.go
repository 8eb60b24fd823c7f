package servicetest

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Root is the module's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var built struct {
	sync.Once
	path string
	err  error
}

// Binary builds the real ext-authz binary (cmd/ext-authz) once per test
// process, for the tests that need a process of its own: signals, exit
// codes, CPU and memory measured apart from the test's. TestMain calls
// RemoveBinary after the run.
func Binary(t testing.TB) string {
	t.Helper()
	built.Do(func() {
		dir, err := os.MkdirTemp("", "ext-authz-bin")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "ext-authz")
		cmd := exec.Command("go", "build", "-o", built.path, "./cmd/ext-authz")
		cmd.Dir = Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = errors.New(string(out))
		}
	})
	if built.err != nil {
		t.Fatalf("go build: %v", built.err)
	}
	return built.path
}

// RemoveBinary deletes what Binary built, if anything.
func RemoveBinary() {
	if built.path != "" {
		_ = os.RemoveAll(filepath.Dir(built.path))
	}
}

// Proc is the real binary serving a config.
type Proc struct {
	Cmd       *exec.Cmd
	GRPCAddr  string
	AdminAddr string
	// Starting is the "starting" log line.
	Starting map[string]any
	lines    chan map[string]any
	// Done receives the process's exit once its stderr is drained.
	Done chan error
}

// StartBinary runs `ext-authz serve --config cfgPath` and waits for its
// "serving" line, which names the ports it got.
func StartBinary(t testing.TB, cfgPath string) *Proc {
	t.Helper()
	return StartCmd(t, exec.Command(Binary(t), "serve", "--config", cfgPath))
}

// StartCmd starts cmd, a prepared `ext-authz serve`, as StartBinary does;
// the test's cleanup kills it if it still runs.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd, lines: make(chan map[string]any, 1000), Done: make(chan error, 1)}
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
		p.Done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	p.Starting = p.WaitLine(t, "starting")
	if m := p.WaitLine(t, "serving"); m != nil {
		p.GRPCAddr, _ = m["grpc_address"].(string)
		p.AdminAddr, _ = m["admin_address"].(string)
	}
	return p
}

// WaitLine returns the next JSON log line whose msg is msg, skipping the
// others; the test fails if the process exits or 15 s pass first.
func (p *Proc) WaitLine(t testing.TB, msg string) map[string]any {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m := <-p.lines:
			if m["msg"] == msg {
				return m
			}
		case err := <-p.Done:
			t.Fatalf("ext-authz exited before %q: %v", msg, err)
		case <-timeout:
			t.Fatalf("no %q log line within 15s", msg)
		}
	}
}
