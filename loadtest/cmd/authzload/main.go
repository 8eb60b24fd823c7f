package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ext-authz/ext-authz/loadtest/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "authzload:", err)
		if errors.Is(err, errGoalMissed) {
			os.Exit(3) // measured fine, but a -judge goal failed
		}
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	addr, baseline   string
	pid, baselinePID int
	auxPID           int
	// peer is a third server measured in the same rounds (OPA-Envoy,
	// envoyproxy/ratelimit, or another size in the scale run).
	peer                               string
	peerPID                            int
	peerExpect                         string
	targetName, baselineName, peerName string
	goal                               string
	judge                              bool
	scenario                           scenarioOptions
	pool                               string
	conns                              int
	opts                               load.Options
	rounds                             int
	expect                             string
	minExpected                        float64
	jsonOut                            string
	label                              string
	allowRemote                        bool
	// decode is how answers are read: decodeLean or decodeFull.
	decode string
	// fresh sends each server every request of the pool at most once over
	// the whole measurement, and fails it when the pool wrapped.
	fresh bool
	// pprof is a loopback address to serve the driver's /debug/pprof/ on
	// while it runs; empty: none.
	pprof string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("authzload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8888", "target gRPC address (ext-authz)")
	fs.StringVar(&c.baseline, "baseline", "", "baseline gRPC address (noopauthz); empty: no baseline")
	fs.IntVar(&c.pid, "pid", 0, "target server's PID, to report its peak RSS (VmHWM)")
	fs.IntVar(&c.baselinePID, "baseline-pid", 0, "baseline server's PID, to report its peak RSS")
	fs.IntVar(&c.auxPID, "aux-pid", 0, "a process the target depends on (redis-server), to report its CPU per request too")
	fs.StringVar(&c.peer, "peer", "", "a peer's gRPC address (OPA-Envoy, envoyproxy/ratelimit), measured in the same rounds; empty: none")
	fs.IntVar(&c.peerPID, "peer-pid", 0, "the peer's PID, for its CPU per request and peak RSS")
	fs.StringVar(&c.peerExpect, "peer-expect", "", "the peer's expected outcome (default: -expect)")
	fs.StringVar(&c.targetName, "target-name", "ext-authz", "the target's name in ratios")
	fs.StringVar(&c.baselineName, "baseline-name", "no-op", "the baseline's name in ratios")
	fs.StringVar(&c.peerName, "peer-name", "peer", "the peer's name in ratios")
	fs.StringVar(&c.goal, "goal", "", "report the ratios against the issue's goal: "+goalNames()+"; empty: none")
	fs.BoolVar(&c.judge, "judge", false, "exit with status 3 when a -goal check fails or cannot be measured")
	fs.StringVar(&c.scenario.Name, "scenario", "jwt", "what to send: "+scenarioNames())
	fs.StringVar(&c.pool, "pool", "", "token pool file, one token per line (jwt, udb, jwt-ratelimit)")
	fs.StringVar(&c.scenario.Host, "host", "example.com", "request host")
	fs.StringVar(&c.scenario.Path, "path", "", "request path (default: the scenario's)")
	fs.StringVar(&c.scenario.Domain, "domain", "loadtest", "rate limit domain (rls)")
	fs.IntVar(&c.scenario.Users, "users", 1000, "distinct users (rls)")
	fs.IntVar(&c.conns, "conns", 2, "HTTP/2 connections per server (a gateway holds one per Envoy worker)")
	fs.IntVar(&c.opts.Workers, "workers", 64, "closed loop: concurrent requests; open loop: most in flight")
	fs.DurationVar(&c.opts.Duration, "duration", 10*time.Second, "measured time per round and server")
	fs.DurationVar(&c.opts.Warmup, "warmup", 2*time.Second, "unmeasured time before each round")
	fs.Float64Var(&c.opts.Rate, "rate", 0, "open loop at this many requests per second (0: closed loop)")
	fs.IntVar(&c.rounds, "rounds", 3, "rounds; each drives the baseline and the target once, alternating who goes first")
	fs.StringVar(&c.expect, "expect", "ok", "the target's expected outcome (ok, unauthenticated, rate_limited, over_limit, ...); empty: any")
	fs.Float64Var(&c.minExpected, "min-expected", 0.99, "fail when fewer of the target's answers than this are the expected outcome")
	fs.StringVar(&c.jsonOut, "json", "", "also write the summary as JSON to this file")
	fs.StringVar(&c.label, "label", "", "a name for this measurement in the output (default: the scenario)")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow non-loopback addresses")
	fs.StringVar(&c.decode, "decode", decodeLean, "how answers are read: lean (only the status code and response kind, or overall_code, with protowire; requests marshalled once) or full (grpc-go's codec builds the whole message, as before)")
	fs.BoolVar(&c.fresh, "fresh", false, "never send a server the same request twice: each server walks the pool once over warm-ups and rounds; the run fails when the target's or the peer's walk wrapped (pool too small)")
	fs.StringVar(&c.pprof, "pprof", "", "serve the driver's /debug/pprof/ on this loopback address while it runs (goroutine dumps of a stalled round: where the requests in flight are); empty: none")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case c.conns < 1:
		return nil, errors.New("-conns must be at least 1")
	case c.opts.Workers < 1:
		return nil, errors.New("-workers must be at least 1")
	case c.rounds < 1:
		return nil, errors.New("-rounds must be at least 1")
	case c.opts.Duration <= 0:
		return nil, errors.New("-duration must be positive")
	case c.opts.Rate < 0:
		return nil, errors.New("-rate must not be negative")
	case c.minExpected < 0 || c.minExpected > 1:
		return nil, errors.New("-min-expected must be between 0 and 1")
	case c.decode != decodeLean && c.decode != decodeFull:
		return nil, fmt.Errorf("-decode %q: want %s or %s", c.decode, decodeLean, decodeFull)
	}
	if c.goal != "" {
		if _, ok := goals[c.goal]; !ok {
			return nil, fmt.Errorf("unknown -goal %q (one of %s)", c.goal, goalNames())
		}
	}
	if c.peerExpect == "" {
		c.peerExpect = c.expect
	}
	for _, a := range []string{c.addr, c.baseline, c.peer, c.pprof} {
		if a == "" || c.allowRemote {
			continue
		}
		if err := checkLoopback(a); err != nil {
			return nil, err
		}
	}
	if c.label == "" {
		c.label = c.scenario.Name
	}
	return c, nil
}

// checkLoopback refuses an address that is not on this machine's loopback.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("address %q is not loopback; pass -allow-remote to load a remote server deliberately", addr)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "freeport" {
		return freePort(stdout)
	}
	if len(args) > 0 && args[0] == "schedprobe" {
		return schedProbe(ctx, args[1:], stdout, stderr)
	}
	c, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if c.pprof != "" {
		_, stop, err := servePprof(c.pprof)
		if err != nil {
			return err
		}
		defer stop()
	}
	if c.pool != "" {
		if c.scenario.Tokens, err = readPool(c.pool); err != nil {
			return err
		}
	}
	sc, err := buildScenario(c.scenario)
	if err != nil {
		return err
	}
	if c.decode == decodeLean {
		if err := sc.prepare(); err != nil {
			return err
		}
	}
	targets := []*target{{name: "target", addr: c.addr, pid: c.pid, auxPID: c.auxPID}}
	if c.baseline != "" {
		targets = append(targets, &target{name: "baseline", addr: c.baseline, pid: c.baselinePID})
	}
	if c.peer != "" {
		// The peer may depend on the same process as the target
		// (envoyproxy/ratelimit on the same redis-server).
		targets = append(targets, &target{name: "peer", addr: c.peer, pid: c.peerPID, auxPID: c.auxPID})
	}
	for _, t := range targets {
		if t.conns, err = dial(t.addr, c.conns); err != nil {
			return err
		}
		defer closeAll(t.conns)
		var pick func(uint64) uint64
		if c.fresh {
			t.cursor = newCursor(sc.size())
			pick = t.cursor.pick
		}
		t.call = sc.call(t.conns, c.decode, pick)
	}
	fmt.Fprintf(stdout, "# %s: scenario=%s mode=%s workers=%d conns=%d duration=%s warmup=%s rounds=%d decode=%s",
		c.label, sc.name, mode(c.opts), c.opts.Workers, c.conns, c.opts.Duration, c.opts.Warmup, c.rounds, c.decode)
	if c.fresh {
		fmt.Fprintf(stdout, " fresh pool=%d", sc.size())
	}
	if c.opts.Rate > 0 {
		fmt.Fprintf(stdout, " rate=%.0f/s", c.opts.Rate)
	}
	fmt.Fprintln(stdout)
	for round := range c.rounds {
		for _, t := range rotation(targets, round) {
			res, err := measure(ctx, t, c.opts)
			if err != nil {
				return err
			}
			t.results = append(t.results, res)
			fmt.Fprintf(stdout, "round %d %-8s %s\n", round+1, t.name, formatResult(res))
		}
	}
	sum := summarise(c, targets)
	fmt.Fprint(stdout, sum.text())
	if c.jsonOut != "" {
		data, err := json.MarshalIndent(sum, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(c.jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return sum.check()
}

// servePprof serves net/http/pprof's handlers on addr (bound is the
// address it listens on) until stop is called, on a mux of its own (not
// http.DefaultServeMux).
func servePprof(addr string) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("-pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return ln.Addr().String(), func() {
		_ = srv.Close()
		<-done
	}, nil
}

// rotation is the order in which round drives the servers: each round
// starts one further along, so over len(ts) rounds each server goes first
// once, and drift on a shared machine hits all of them. With two servers
// it alternates.
func rotation[T any](ts []T, round int) []T {
	out := make([]T, 0, len(ts))
	for i := range ts {
		out = append(out, ts[(i+round)%len(ts)])
	}
	return out
}

func mode(o load.Options) string {
	if o.Rate > 0 {
		return "open"
	}
	return "closed"
}

// target is one server under load.
type target struct {
	name, addr string
	pid        int
	auxPID     int // a process the server depends on (redis-server)
	conns      []*grpc.ClientConn
	call       load.Call
	results    []result
	cursor     *cursor // -fresh: this server's walk over the pool
}

// result is one measured run with the CPU the server and this driver
// spent on it.
type result struct {
	load.Result
	// ServerCPU and DriverCPU are CPU time (user+system) per answered
	// request; zero when unknown. Unlike throughput, they hardly depend on
	// what else runs on a shared machine, so they show where a
	// throughput ratio comes from.
	ServerCPU, DriverCPU time.Duration
	// AuxCPU is the CPU per request of the process the server depends on
	// (redis-server), which shares the machine's cores.
	AuxCPU time.Duration
}

// measure warms up, then runs the measured part between two readings of
// the server's and the driver's CPU time.
func measure(ctx context.Context, t *target, opts load.Options) (result, error) {
	if opts.Warmup > 0 {
		w := opts
		w.Duration, w.Warmup = opts.Warmup, 0
		if _, err := load.Run(ctx, t.call, w); err != nil {
			return result{}, err
		}
	}
	opts.Warmup = 0
	srv0, srvErr := processCPU(t.pid)
	aux0, auxErr := processCPU(t.auxPID)
	drv0 := selfCPU()
	res, err := load.Run(ctx, t.call, opts)
	if err != nil {
		return result{}, err
	}
	out := result{Result: res}
	if res.Requests > 0 {
		out.DriverCPU = (selfCPU() - drv0) / time.Duration(res.Requests)
		if srv1, err := processCPU(t.pid); srvErr == nil && err == nil {
			out.ServerCPU = (srv1 - srv0) / time.Duration(res.Requests)
		}
		if aux1, err := processCPU(t.auxPID); auxErr == nil && err == nil {
			out.AuxCPU = (aux1 - aux0) / time.Duration(res.Requests)
		}
	}
	return out, nil
}

// dial opens n separate HTTP/2 connections (grpc.NewClient shares nothing
// between clients).
func dial(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		conns = append(conns, cc)
		if err := waitReady(cc, 10*time.Second); err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
	}
	return conns, nil
}

// waitReady connects cc and waits until it is ready, so that no round
// (and no short test run) measures the connection's set-up.
func waitReady(cc *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("not connected after %v (last state %s)", timeout, s)
		}
	}
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

func formatResult(r result) string {
	s := fmt.Sprintf("%9.0f req/s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  n=%d  [%s]",
		r.Throughput, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.P999), ms(r.Max), r.Requests, r.MixString())
	if r.ServerCPU > 0 {
		s += fmt.Sprintf("  cpu/req server %s", us(r.ServerCPU))
	}
	s += fmt.Sprintf(" driver %s", us(r.DriverCPU))
	if r.AuxCPU > 0 {
		s += fmt.Sprintf(" aux %s", us(r.AuxCPU))
	}
	if r.Late > 0 {
		s += fmt.Sprintf("  late=%d", r.Late)
	}
	if r.Cut > 0 {
		s += fmt.Sprintf("  unanswered_at_end=%d", r.Cut)
	}
	return s
}

func us(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64) + "µs"
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// freePort prints a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(stdout io.Writer) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, port)
	return err
}

// processCPU reads a process's user+system CPU time from /proc/PID/stat.
func processCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(data))
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc on every
// architecture this runs on.
const clockTicks = 100

func parseStatCPU(stat string) (time.Duration, error) {
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after its closing parenthesis are plain numbers. utime and
	// stime are fields 14 and 15, so the 12th and 13th after it.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS reads a process's peak resident set (VmHWM) from /proc.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmHWM(string(data))
}

func parseVmHWM(status string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmHWM line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmHWM: %w", err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmHWM in status")
}
