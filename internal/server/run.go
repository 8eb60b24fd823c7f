package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/drain"
	"github.com/ext-authz/ext-authz/internal/filewatch"
	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/telemetry"
)

// Server is the running service: the gRPC, HTTP and admin servers, the
// live configuration generation, and config reloads.
type Server struct {
	path     string
	opts     Options
	tel      *telemetry.Telemetry
	logger   *slog.Logger
	registry *prometheus.Registry
	env      *generation.Env
	// pool holds the components generations share (see generation).
	pool *pool.Pool

	// base is cancelled at shutdown, after the drain; components'
	// background work runs under it.
	base       context.Context
	cancelBase context.CancelFunc

	live *authz.Live
	// candidate asks live, and the generation's candidate policy beside
	// it (candidate.go); both transports ask it.
	candidate *candidateDecider
	// rl is the limiter every generation shares (nil without
	// rate_limit.files); its settings are restart-only.
	rl     *generation.RateLimiting
	health *health.Server
	grpc   *grpc.Server
	// http is the HTTP ext_authz server; nil when server.http_address is
	// empty.
	http     *http.Server
	admin    *http.Server
	draining atomic.Bool
	// admission and checkMetrics are shared by both transports: one
	// budget of calls, one count of decisions.
	admission    *grpcAdmission
	checkMetrics *extauthz.Metrics
	decisions    *decisionLog

	grpcLis, httpLis, adminLis net.Listener

	// redisDown holds the last Redis PING failure (nil when it answered).
	redisDown atomic.Pointer[error]

	mu sync.Mutex // serialises reloads
	// gen is the generation serving now. Only a holder of mu replaces it,
	// but ready() reads it without mu: a reload holds mu while it waits
	// (up to reloadWait) for a new generation to be ready, and a readiness
	// probe must not wait with it.
	gen        atomic.Pointer[generation.Generation]
	reloadWait time.Duration
}

// Options are New's optional inputs.
type Options struct {
	// Getenv expands ${NAME} in the config file on every reload (nil: every
	// variable is unset).
	Getenv func(string) string
	// Adjust, when set, changes every reloaded config before it is
	// compiled, as the caller changed the first one (the listen addresses
	// from flags or the environment), so a reload compares like with like.
	Adjust func(*generation.Config)
}

// New compiles the first generation from cfg, loaded from path, and builds
// the servers. It starts no goroutine and opens no socket: Listen, then
// Serve, then Close.
func New(path string, cfg *generation.Config, tel *telemetry.Telemetry, opts Options) (*Server, error) {
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	s := &Server{
		path:       path,
		opts:       opts,
		tel:        tel,
		logger:     tel.Logger,
		registry:   tel.Registry,
		health:     health.NewServer(),
		reloadWait: 10 * time.Second,
	}
	s.pool = pool.New(pool.Options{OnRunError: func(key string, err error) {
		s.logger.Error("background work stopped", "component", componentName(key), "error", err)
	}})
	s.env = newBuildEnv(tel, s.pool)
	s.env.Explain = cfg.Admin.Explain // restart-only: every generation alike
	g, err := generation.Compile(s.env, cfg)
	if err != nil {
		return nil, cfg.Annotate(err)
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.gen.Store(g)
	s.rl = g.RateLimit
	s.live = authz.NewLive(g.Pipeline)
	s.candidate = newCandidateDecider(s.live, g.Candidate, s.logger, s.registry)
	s.admission = newAdmission(cfg.Server.Overload, s.registry)
	s.checkMetrics = extauthz.NewMetrics(s.registry)
	s.decisions = newDecisionLog(s.logger, cfg.Telemetry.Log.Decisions, s.registry)
	s.grpc = s.newGRPCServer(&cfg.Server)
	s.http = s.newHTTPServer(&cfg.Server)
	s.admin = s.newAdminServer(&cfg.Admin)
	s.setServing(false)
	tel.ConfigLoaded(cfg.Sum())
	return s, nil
}

// newBuildEnv is what compiling a generation uses from the process.
func newBuildEnv(tel *telemetry.Telemetry, p *pool.Pool) *generation.Env {
	env := &generation.Env{Logger: tel.Logger, Registry: tel.Registry, Pool: p}
	if tel.Tracing() {
		env.TracerProvider, env.Tracer = tel.TracerProvider, tel.Tracer
	}
	return env
}

// componentName is the readable part of a pool key: its kind and name,
// never its config (which may hold a password).
func componentName(key string) string {
	name, _, _ := strings.Cut(key, "\x00")
	return name
}

// cfg is the configuration serving now.
func (s *Server) cfg() *generation.Config { return s.gen.Load().Config }

// Listen opens every socket, so a port conflict fails start-up at once.
func (s *Server) Listen() error {
	var err error
	if s.grpcLis, err = net.Listen("tcp", s.cfg().Server.GRPCAddress); err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	if s.http != nil {
		if s.httpLis, err = net.Listen("tcp", s.cfg().Server.HTTPAddress); err != nil {
			_ = s.grpcLis.Close()
			return fmt.Errorf("http listener: %w", err)
		}
	}
	if s.adminLis, err = net.Listen("tcp", s.cfg().Admin.Address); err != nil {
		_ = s.grpcLis.Close()
		if s.httpLis != nil {
			_ = s.httpLis.Close()
		}
		return fmt.Errorf("admin listener: %w", err)
	}
	return nil
}

// Serve runs until ctx ends, then drains. It returns nil after a clean
// drain.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if err := s.gen.Load().Start(s.base); err != nil {
		s.mu.Unlock()
		return err
	}
	// The sections read here are restart-only: every generation has the
	// values this one has.
	watchRedis := s.cfg().Redis.RequiredForReadiness
	s.mu.Unlock()
	s.logger.Info("serving", "grpc_address", s.grpcLis.Addr().String(), "http_address", addrString(s.httpLis),
		"admin_address", s.adminLis.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.serveGRPC(s.grpcLis); err != nil {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	if s.http != nil {
		g.Go(func() error {
			if err := s.serveHTTP(s.httpLis); err != nil {
				return fmt.Errorf("http server: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		if err := s.admin.Serve(s.adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin server: %w", err)
		}
		return nil
	})
	g.Go(func() error { s.watchReadiness(gctx); return nil })
	if watchRedis {
		g.Go(func() error { s.watchRedis(gctx); return nil })
	}
	g.Go(func() error { s.watchConfig(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		s.drain()
		return nil
	})
	return g.Wait()
}

// drain: health NOT_SERVING (and HTTP keep-alives off, so each HTTP
// connection closes after its answer) → wait drain_delay → GracefulStop
// and HTTP Shutdown bounded by drain_timeout → Stop and Close; then the
// admin server and background work.
func (s *Server) drain() {
	sc := s.cfg().Server
	s.logger.Info("draining", "drain_delay", sc.DrainDelay.String(), "drain_timeout", sc.DrainTimeout.String())
	s.draining.Store(true)
	s.health.Shutdown()
	if s.http != nil {
		s.http.SetKeepAlivesEnabled(false)
	}
	servers := []drain.Server{s.grpc}
	if s.http != nil {
		h := newHTTPDrain(s.http)
		defer h.cancel()
		servers = append(servers, h)
	}
	drain.Run(drain.Options{
		Delay:     sc.DrainDelay,
		Timeout:   sc.DrainTimeout,
		OnTimeout: func() { s.logger.Warn("drain timeout: closing remaining calls") },
	}, servers...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.admin.Shutdown(ctx)
	s.logger.Info("drained")
}

// httpDrain is an *http.Server as a drain.Server: Shutdown returns when
// the last check is answered, or once Stop cancels it and closes the
// connections left.
type httpDrain struct {
	srv    *http.Server
	ctx    context.Context
	cancel context.CancelFunc
}

func newHTTPDrain(srv *http.Server) *httpDrain {
	ctx, cancel := context.WithCancel(context.Background())
	return &httpDrain{srv: srv, ctx: ctx, cancel: cancel}
}

func (h *httpDrain) GracefulStop() { _ = h.srv.Shutdown(h.ctx) }

func (h *httpDrain) Stop() {
	h.cancel()
	_ = h.srv.Close()
}

// Close releases what New built: the serving generation, and with
// it every shared component. Call it after serve returns (or instead of
// serve).
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.gen.Load().Release()
	s.cancelBase()
	if s.grpcLis != nil {
		_ = s.grpcLis.Close()
	}
	if s.httpLis != nil {
		_ = s.httpLis.Close()
	}
	if s.adminLis != nil {
		_ = s.adminLis.Close()
	}
	return err
}

func addrString(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// Ready returns nil when the service can decide requests.
func (s *Server) Ready() error {
	if s.draining.Load() {
		return errors.New("draining")
	}
	if p := s.redisDown.Load(); p != nil && *p != nil {
		return fmt.Errorf("redis: %w", *p)
	}
	return s.gen.Load().Ready()
}

// watchRedis pings Redis every second for readiness (only with
// redis.required_for_readiness).
func (s *Server) watchRedis(ctx context.Context) {
	l := s.pool.NewLease()
	defer func() { _ = l.Release() }()
	cli, err := s.env.Redis(l, &s.cfg().Redis)
	if err != nil {
		s.redisDown.Store(&err)
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := cli.Ping(pctx).Err()
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.redisDown.Store(&err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// healthServices are the names grpc.health.v1 answers for.
var healthServices = []string{"", "envoy.service.auth.v3.Authorization"}

func (s *Server) setServing(ok bool) {
	st := healthpbNotServing
	if ok {
		st = healthpbServing
	}
	for _, name := range healthServices {
		s.health.SetServingStatus(name, st)
	}
}

// watchReadiness keeps the gRPC health status in step with ready().
func (s *Server) watchReadiness(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := false
	first := true
	for {
		err := s.Ready()
		if ok := err == nil; ok != last || first {
			if !s.draining.Load() {
				s.setServing(ok)
			}
			if !ok {
				s.logger.Warn("not ready", "error", err)
			} else {
				s.logger.Info("ready")
			}
			last, first = ok, false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchConfig reloads on SIGHUP at once, and every reload_interval when
// the content of the config file or of any file it references has changed
// and then stayed the same for a whole interval: a file rewritten in place
// is not applied half-written (unless its writer pauses for longer than
// that; write a new file and rename it over the old one, as a Kubernetes
// ConfigMap update does). Content, not mtime, is compared: a ConfigMap
// update swaps a symlink and keeps old timestamps.
func (s *Server) watchConfig(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	iv := s.cfg().Server.ReloadInterval
	if iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		tick = t.C
	}
	var st filewatch.Settle
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			st = filewatch.Settle{}
			_ = s.reload("sighup")
		case now := <-tick:
			_ = s.poll(&st, now, iv)
		}
	}
}

// poll is one look at the files: it applies them when they changed and
// have settled (see filewatch.Settle). It reports whether it attempted a reload.
func (s *Server) poll(st *filewatch.Settle, now time.Time, quiet time.Duration) bool {
	data, cur := s.snapshot()
	if !st.Observe(cur, s.gen.Load().Files, now, quiet) {
		return false
	}
	if err := s.apply("file changed", data, cur); errors.Is(err, generation.ErrFilesChanged) {
		st.Retry()
	}
	return true
}

// snapshot reads the config file and digests it (the digest of exactly
// the bytes returned) and every file the serving generation references.
func (s *Server) snapshot() ([]byte, filewatch.Digests) {
	g := s.gen.Load()
	paths := make([]string, 0, len(g.Files))
	for p := range g.Files {
		if p != s.path {
			paths = append(paths, p)
		}
	}
	cur := filewatch.DigestAll(paths)
	data, err := os.ReadFile(s.path)
	if err != nil {
		cur[s.path] = "unreadable: " + err.Error()
		return nil, cur
	}
	cur[s.path] = filewatch.DigestBytes(data)
	return data, cur
}

// reload reads the config file and applies it.
func (s *Server) reload(why string) error {
	data, err := os.ReadFile(s.path)
	if err != nil {
		s.tel.Reloads.WithLabelValues("failure").Inc()
		s.logger.Error("config reload rejected", append([]any{"reason", why}, telemetry.ErrorAttrs(err)...)...)
		return err
	}
	return s.apply(why, data, nil)
}

// apply parses data (the config file's content), compiles a new
// generation, waits until it is ready, swaps it in and releases the old
// one. A bad file, or one whose generation does not become ready, is
// rejected with a log line and the old generation keeps serving.
// Restart-only settings keep their running values. With expect, the
// generation must have read exactly the files expect describes (the
// content that settled) where it read the same paths, or it is discarded
// with generation.ErrFilesChanged.
func (s *Server) apply(why string, data []byte, expect filewatch.Digests) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.gen.Load()
	next, err := s.prepare(data, old, expect)
	if err != nil {
		if errors.Is(err, generation.ErrFilesChanged) {
			s.logger.Info("config reload postponed", "reason", why, "error", err)
			return err
		}
		s.tel.Reloads.WithLabelValues("failure").Inc()
		s.logger.Error("config reload rejected", append([]any{"reason", why}, telemetry.ErrorAttrs(err)...)...)
		return err
	}
	// The logger learns new credential carriers before any request can
	// bring one.
	s.tel.Redact.Add(next.Config.CredentialKeys())
	next.ApplyLimits()
	s.live.Store(next.Pipeline)
	s.candidate.store(next.Candidate)
	s.gen.Store(next)
	if err := old.Release(); err != nil {
		s.logger.Warn("releasing the old configuration", "error", err)
	}
	s.tel.Reloads.WithLabelValues("success").Inc()
	s.tel.ConfigLoaded(next.Config.Sum())
	s.logger.Info("config reloaded", append([]any{"reason", why}, generation.DescribeChanges(old, next)...)...)
	for _, f := range next.Config.RestartOnlyFiles() {
		if d, ok := old.Files[f]; ok && d != next.Files[f] {
			s.logger.Warn("file read only at start changed; restart to apply it", "file", f)
		}
	}
	return nil
}

// prepare builds the next generation from data and starts it; on error
// nothing it built is left running.
func (s *Server) prepare(data []byte, old *generation.Generation, expect filewatch.Digests) (*generation.Generation, error) {
	cfg, err := generation.Parse(s.path, data, s.opts.Getenv)
	if err != nil {
		return nil, err
	}
	if s.opts.Adjust != nil {
		s.opts.Adjust(cfg) // checked at start; server and admin are restart-only
	}
	for _, name := range generation.KeepRestartOnly(cfg, old.Config) {
		s.logger.Warn("config setting changed; restart to apply it", "section", name)
	}
	next, err := generation.Compile(s.env, cfg)
	if err != nil {
		return nil, cfg.Annotate(err)
	}
	if !next.Files.Agree(expect) {
		_ = next.Release()
		return nil, generation.ErrFilesChanged
	}
	if err := s.startAndAwait(next); err != nil {
		_ = next.Release()
		return nil, cfg.Annotate(err)
	}
	return next, nil
}

// startAndAwait starts the generation's new components and waits for it to
// be ready, so a reload never swaps in a pipeline that cannot verify (a
// JWKS issuer without keys yet).
func (s *Server) startAndAwait(g *generation.Generation) error {
	if err := g.Start(s.base); err != nil {
		return err
	}
	deadline := time.Now().Add(s.reloadWait)
	for {
		err := g.Ready()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
