// Package redistest starts real redis-server processes for tests: a
// standalone server or a Redis Cluster of several masters, each on a free
// loopback port, stopped when the test ends. Tests that need Redis call
// Start or StartCluster; when redis-server is not installed they fail (CI
// installs it) unless REDISTEST_SKIP=1 is set, in which case they skip.
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process.
type Server struct {
	Addr string
	Port int
	dir  string
	args []string
	cmd  *exec.Cmd
	t    testing.TB

	logShown bool
}

// Start runs a standalone redis-server on a free port and stops it at the
// end of the test.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s := newServer(t, extraArgs...)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func newServer(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	bin := binary(t)
	port := freePort(t)
	dir := t.TempDir()
	args := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--protected-mode", "no", "--loglevel", "warning",
	}
	args = append(args, extraArgs...)
	return &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, dir: dir, args: append([]string{bin}, args...), t: t}
}

func binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("REDISTEST_SKIP") == "1" {
			t.Skip("redis-server not installed and REDISTEST_SKIP=1")
		}
		t.Fatalf("redis-server not found on PATH (apt-get install -y redis-server): %v", err)
	}
	return bin
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.args[0], s.args[1:]...)
	s.cmd.Dir = s.dir
	// The server's own log goes to a file, shown only when the test fails.
	logPath := filepath.Join(s.dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatalf("redis log: %v", err)
	}
	defer func() { _ = logFile.Close() }()
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if !s.logShown {
		s.logShown = true
		s.t.Cleanup(func() {
			if s.t.Failed() {
				if b, err := os.ReadFile(logPath); err == nil {
					s.t.Logf("redis-server %s log:\n%s", s.Addr, b)
				}
			}
		})
	}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	if err := waitPing(s.Addr, 10*time.Second); err != nil {
		s.Stop()
		s.t.Fatalf("redis-server on %s: %v", s.Addr, err)
	}
}

// Stop kills the server (as a crash would) and waits for it to exit. It is
// safe to call more than once.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Pause stops the process with SIGSTOP: connections stay open but nothing
// is answered, like a stalled server. Resume undoes it.
func (s *Server) Pause() {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// Resume continues a paused server.
func (s *Server) Resume() {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// Do sends one command over a fresh connection and returns the raw reply
// line(s) as text; for test setup and assertions, not for speed.
func (s *Server) Do(args ...string) (string, error) {
	return do(s.Addr, args...)
}

// Cluster is a Redis Cluster of masters only.
type Cluster struct {
	Servers []*Server
}

// Addrs returns the masters' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		out[i] = s.Addr
	}
	return out
}

// StartCluster starts n (at least 3) cluster-enabled servers and joins them
// with redis-cli --cluster create, then waits until the cluster is ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("a Redis Cluster needs at least 3 masters, not %d", n)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found on PATH: %v", err)
	}
	c := &Cluster{}
	for range n {
		s := newServer(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
			"--cluster-config-file", "nodes.conf")
		s.start()
		t.Cleanup(s.Stop)
		c.Servers = append(c.Servers, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, s := range c.Servers {
			info, err := s.Do("CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ok = false
				break
			}
		}
		if ok {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis cluster did not become ok within 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	// A cluster also listens on port+10000, so pick ports whose bus port is
	// free too.
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		_ = bus.Close()
		return port
	}
	t.Fatalf("no free port pair found")
	return 0
}

func waitPing(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		out, err := do(addr, "PING")
		if err == nil && strings.Contains(out, "PONG") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within %s: %w", limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// do speaks just enough RESP for setup commands: it sends one command and
// reads one reply, returning simple/bulk strings and error lines as text.
func do(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	return readReply(r)
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		var parts []string
		for range n {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return line, nil
}

// Dir is where the server keeps its files (nodes.conf for a cluster member).
func (s *Server) Dir() string { return filepath.Clean(s.dir) }
