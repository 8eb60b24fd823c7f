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
	"sort"
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
	// replicaOf is, for a cluster replica, its master's node id at start.
	replicaOf string
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

// Cluster is a Redis Cluster: masters, and replicas when started with
// StartClusterReplicas.
type Cluster struct {
	// Servers are every node, in the order redis-cli --cluster create was
	// given them (the masters first).
	Servers []*Server
}

// Addrs returns every node's address (all are valid seed nodes).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		out[i] = s.Addr
	}
	return out
}

// StartCluster starts n (at least 3) cluster-enabled masters and joins them
// with redis-cli --cluster create, then waits until the cluster is ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return startCluster(t, n, 0, 2000)
}

// StartClusterReplicas starts a cluster of masters (at least 3), each with
// replicasPerMaster replicas, and a cluster-node-timeout of nodeTimeout
// (1s when zero), so that a master's failover completes within a few
// seconds. It returns once the cluster is ok and every replica is in sync.
func StartClusterReplicas(t testing.TB, masters, replicasPerMaster int, nodeTimeout time.Duration) *Cluster {
	t.Helper()
	if nodeTimeout <= 0 {
		nodeTimeout = time.Second
	}
	return startCluster(t, masters, replicasPerMaster, int(nodeTimeout.Milliseconds()))
}

func startCluster(t testing.TB, masters, replicas, nodeTimeoutMS int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found on PATH: %v", err)
	}
	c := &Cluster{}
	for range masters * (1 + replicas) {
		s := newServer(t, "--cluster-enabled", "yes", "--cluster-node-timeout", strconv.Itoa(nodeTimeoutMS),
			"--cluster-config-file", "nodes.conf")
		s.start()
		t.Cleanup(s.Stop)
		c.Servers = append(c.Servers, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitHealthy(nil, 30*time.Second); err != nil {
		t.Fatalf("redis cluster: %v", err)
	}
	nodes, err := c.Servers[0].Nodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if s := c.server(n.Addr); s != nil && !n.Master {
			s.replicaOf = n.MasterID
		}
	}
	return c
}

// waitHealthy waits until every running node but skip reports cluster_state
// ok and agrees on the topology, and every replica's link to its master is
// up.
func (c *Cluster) waitHealthy(skip *Server, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := c.healthy(skip)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy within %s: %w", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) healthy(skip *Server) error {
	var first string
	for _, s := range c.Servers {
		if s == skip || s.cmd == nil {
			continue
		}
		info, err := s.Do("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: %w", s.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", s.Addr)
		}
		nodes, err := s.Nodes()
		if err != nil {
			return err
		}
		view := topology(nodes)
		if first == "" {
			first = view
		} else if view != first {
			return fmt.Errorf("%s sees another topology", s.Addr)
		}
		repl, err := s.Do("INFO", "replication")
		if err != nil {
			return fmt.Errorf("%s: %w", s.Addr, err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("%s: replica not in sync", s.Addr)
		}
	}
	return nil
}

// topology is a comparable summary of a CLUSTER NODES view: which live
// addresses are masters of which slots.
func topology(nodes []Node) string {
	var parts []string
	for _, n := range nodes {
		if n.Master && !n.Failed {
			parts = append(parts, fmt.Sprintf("%s=%v", n.Addr, n.Slots))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ";")
}

// Node is one line of CLUSTER NODES.
type Node struct {
	ID   string
	Addr string // host:port, without the bus port
	// Master is true for a master, false for a replica.
	Master bool
	// Failed is true when the node is flagged fail (or fail?: suspected).
	Failed bool
	// MasterID is a replica's master.
	MasterID string
	// Slots are the slot ranges a master serves, as [from, to] pairs.
	Slots [][2]int
}

// Nodes returns this server's CLUSTER NODES view.
func (s *Server) Nodes() ([]Node, error) {
	text, err := s.Do("CLUSTER", "NODES")
	if err != nil {
		return nil, fmt.Errorf("CLUSTER NODES on %s: %w", s.Addr, err)
	}
	var out []Node
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := Node{ID: f[0], Addr: f[1], MasterID: f[3]}
		if i := strings.IndexByte(n.Addr, '@'); i >= 0 {
			n.Addr = n.Addr[:i]
		}
		for _, flag := range strings.Split(f[2], ",") {
			switch flag {
			case "master":
				n.Master = true
			case "fail", "fail?":
				n.Failed = true
			}
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") { // a slot being migrated
				continue
			}
			from, to, found := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(from)
			b := a
			var err2 error
			if found {
				b, err2 = strconv.Atoi(to)
			}
			if err1 == nil && err2 == nil {
				n.Slots = append(n.Slots, [2]int{a, b})
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// server returns the running Server at addr, or nil.
func (c *Cluster) server(addr string) *Server {
	for _, s := range c.Servers {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// Owner returns the master that serves key's slot, as the first running node
// that answers sees it.
func (c *Cluster) Owner(t testing.TB, key string) *Server {
	t.Helper()
	slot := KeySlot(key)
	for _, s := range c.Servers {
		if s.cmd == nil {
			continue
		}
		nodes, err := s.Nodes()
		if err != nil {
			continue
		}
		for _, n := range nodes {
			if !n.Master || n.Failed {
				continue
			}
			for _, r := range n.Slots {
				if slot >= r[0] && slot <= r[1] {
					if srv := c.server(n.Addr); srv != nil {
						return srv
					}
				}
			}
		}
	}
	t.Fatalf("no master serves slot %d of %q", slot, key)
	return nil
}

// KillMaster kills master (SIGKILL) and waits until one of its replicas has
// taken over its slots and the cluster is ok again. It returns the new
// master and when the cluster was seen ok again.
func (c *Cluster) KillMaster(t testing.TB, master *Server, limit time.Duration) (*Server, time.Time) {
	t.Helper()
	nodes, err := master.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, n := range nodes {
		if n.Addr == master.Addr {
			id = n.ID
		}
	}
	if err := waitReplicasCaughtUp(master, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	master.Stop()
	promoted, at, err := c.WaitFailover(id, master, limit)
	if err != nil {
		t.Fatal(err)
	}
	return promoted, at
}

// waitReplicasCaughtUp waits until every replica of master is online and
// has acknowledged the master's whole replication stream, so what was
// written before a kill survives the failover. (WAIT alone was seen to
// return while the only replica was still in its SYNC handshake.)
func waitReplicasCaughtUp(master *Server, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		info, err := master.Do("INFO", "replication")
		if err == nil && replicasCaughtUp(info) {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("replicas of %s not caught up within %s: %w", master.Addr, limit, err)
			}
			return fmt.Errorf("replicas of %s not caught up within %s:\n%s", master.Addr, limit, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// replicasCaughtUp reads INFO replication of a master: at least one
// replica, each "state=online" at offset master_repl_offset.
func replicasCaughtUp(info string) bool {
	var offset string
	var replicas []string
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
			offset = v
		}
		if strings.HasPrefix(line, "slave") && strings.Contains(line, ":ip=") {
			replicas = append(replicas, line)
		}
	}
	if offset == "" || len(replicas) == 0 {
		return false
	}
	for _, r := range replicas {
		if !strings.Contains(r, ",state=online,") || !strings.Contains(r, ",offset="+offset+",") {
			return false
		}
	}
	return true
}

// WaitFailover waits until a former replica of the master with id oldID
// (the Server old, now down) is a master and the cluster is ok again. It
// returns the new master and when it was first seen to be one (by ROLE,
// polled every 10ms): from then on it serves the old master's slots.
func (c *Cluster) WaitFailover(oldID string, old *Server, limit time.Duration) (*Server, time.Time, error) {
	deadline := time.Now().Add(limit)
	var promoted *Server
	var at time.Time
	for {
		if promoted == nil {
			for _, s := range c.Servers {
				if s == old || s.cmd == nil || s.replicaOf != oldID {
					continue
				}
				if role, err := s.Do("ROLE"); err == nil && strings.HasPrefix(role, "master") {
					promoted, at = s, time.Now()
				}
			}
		}
		if promoted != nil && c.healthy(old) == nil {
			return promoted, at, nil
		}
		if time.Now().After(deadline) {
			return nil, time.Time{}, fmt.Errorf("no replica of %s took over within %s", old.Addr, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// KeySlot is the Redis Cluster hash slot of key (CRC16 of the key, or of
// its {hash tag}, modulo 16384).
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

// crc16 is CRC-16/XMODEM, as Redis Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
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
