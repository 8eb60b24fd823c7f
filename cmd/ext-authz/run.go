package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// service is the running process: the gRPC and admin servers, the live
// pipeline, the authenticators' background work, and config reloads.
type service struct {
	path     string
	getenv   func(string) string
	tel      *telemetry
	logger   *slog.Logger
	registry *prometheus.Registry
	env      *buildEnv

	// base is cancelled at shutdown, after the drain; authenticators'
	// background work runs under it.
	base       context.Context
	cancelBase context.CancelFunc

	live     *authz.Live
	rl       *rateLimiting // nil without rate_limit.files
	health   *health.Server
	grpc     *grpc.Server
	admin    *http.Server
	draining atomic.Bool

	grpcLis, adminLis net.Listener

	// redisDown holds the last Redis PING failure (nil when it answered).
	redisDown atomic.Pointer[error]

	mu  sync.Mutex // serialises reloads; guards cfg, fileSum
	cfg *fileConfig
	sum [sha256.Size]byte
	// auths are the authenticators serving now. Only a holder of mu
	// replaces them, but ready() reads them without it: a reload holds mu
	// while it waits (up to reloadWait) for new authenticators, and a
	// readiness probe must not wait with it.
	auths      atomic.Pointer[map[string]*runningAuth]
	reloadWait time.Duration
}

// running returns the authenticators serving now (none before newService
// stored the first set).
func (s *service) running() map[string]*runningAuth {
	if p := s.auths.Load(); p != nil {
		return *p
	}
	return nil
}

// runningAuth is a built authenticator with its own background work, so
// an unchanged one survives a reload untouched.
type runningAuth struct {
	cfg    authenticatorConfig
	built  builtAuthenticator
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *runningAuth) start(parent context.Context, logger *slog.Logger) {
	if r.built.run == nil || r.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(parent)
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		if err := r.built.run(ctx); err != nil && ctx.Err() == nil {
			logger.Error("authenticator background work stopped", "authenticator", r.cfg.Name, "error", err)
		}
	}()
}

func (r *runningAuth) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
}

func (r *runningAuth) ready() error {
	if r.built.ready == nil {
		return nil
	}
	if err := r.built.ready(); err != nil {
		return fmt.Errorf("authenticator %s: %w", r.cfg.Name, err)
	}
	return nil
}

// newService builds everything from a validated config. It starts no
// goroutine and opens no socket.
func newService(path string, cfg *fileConfig, getenv func(string) string, tel *telemetry) (*service, error) {
	logger := tel.logger
	s := &service{
		path:     path,
		getenv:   getenv,
		tel:      tel,
		logger:   logger,
		registry: tel.registry,
		health:   health.NewServer(),
		cfg:      cfg,
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.env = &buildEnv{logger: logger, registry: s.registry, redisCfg: cfg.Redis}
	if tel.tracing() {
		s.env.tracerProvider = tel.tracerProvider
	}
	rl, err := s.buildRateLimiting(cfg)
	if err != nil {
		s.cancelBase()
		_ = s.env.close()
		return nil, cfg.annotate(err)
	}
	s.rl = rl
	auths, err := s.buildAuthenticators(cfg)
	if err != nil {
		s.cancelBase()
		return nil, err
	}
	p, err := s.buildPipeline(cfg, auths)
	if err != nil {
		s.cancelBase()
		return nil, err
	}
	cfg.compiled()
	s.auths.Store(&auths)
	s.reloadWait = 10 * time.Second
	s.live = authz.NewLive(p)
	s.sum, _ = fileSum(path)
	s.grpc = s.newGRPCServer(&cfg.Server)
	s.admin = s.newAdminServer(&cfg.Admin)
	s.setServing(false)
	return s, nil
}

// buildAuthenticators builds every configured authenticator, reusing a
// running one whose config is unchanged when it has background state (JWKS
// key sets, session caches): a reload must not drop warm keys or depend on
// the key endpoint being up. Stateless ones are rebuilt so rotated key files
// are read again.
func (s *service) buildAuthenticators(cfg *fileConfig) (map[string]*runningAuth, error) {
	out := make(map[string]*runningAuth, len(cfg.Authenticators))
	var errs []error
	for i := range cfg.Authenticators {
		ac := cfg.Authenticators[i]
		if old := s.running()[ac.Name]; old != nil && old.built.run != nil && reflect.DeepEqual(old.cfg, ac) {
			out[ac.Name] = old
			continue
		}
		b, err := s.env.authenticator(&ac)
		if err != nil {
			errs = append(errs, yamlfile.Wrap(yamlfile.Index("authenticators", i), err))
			continue
		}
		out[ac.Name] = &runningAuth{cfg: ac, built: b}
	}
	return out, errors.Join(errs...)
}

// buildPipeline compiles the policy over the given authenticators.
func (s *service) buildPipeline(cfg *fileConfig, auths map[string]*runningAuth) (*authz.Pipeline, error) {
	list := make([]*authz.Authenticator, 0, len(auths))
	for _, ac := range cfg.Authenticators {
		list = append(list, auths[ac.Name].built.auth)
	}
	opts := authz.Options{}
	if s.tel.tracing() {
		opts.Tracer = s.tel.tracer
	}
	p, err := authz.NewPipeline(cfg.Policy, list, s.rl.pipelineOptions(opts))
	return p, yamlfile.Wrap("policy", err)
}

// listen opens both sockets, so a port conflict fails start-up at once.
func (s *service) listen() error {
	var err error
	if s.grpcLis, err = net.Listen("tcp", s.cfg.Server.GRPCAddress); err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	if s.adminLis, err = net.Listen("tcp", s.cfg.Admin.Address); err != nil {
		_ = s.grpcLis.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	return nil
}

// serve runs until ctx ends, then drains. It returns nil after a clean
// drain.
func (s *service) serve(ctx context.Context) error {
	s.mu.Lock()
	for _, a := range s.running() {
		a.start(s.base, s.logger)
	}
	// A reload may swap s.cfg at any time; the sections read here are the
	// restart-only ones, so one read at start is the truth for this run.
	watchRedis := s.cfg.Redis.RequiredForReadiness
	s.mu.Unlock()
	s.logger.Info("serving", "grpc_address", s.grpcLis.Addr().String(), "admin_address", s.adminLis.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.grpc.Serve(s.grpcLis); err != nil {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
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
	if s.rl != nil {
		g.Go(func() error { return s.rl.run(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		s.drain()
		return nil
	})
	return g.Wait()
}

// drain: health NOT_SERVING → wait drain_delay → GracefulStop bounded by
// drain_timeout → Stop; then the admin server and background work.
func (s *service) drain() {
	s.mu.Lock()
	sc := s.cfg.Server
	s.mu.Unlock()
	s.logger.Info("draining", "drain_delay", sc.DrainDelay.String(), "drain_timeout", sc.DrainTimeout.String())
	s.draining.Store(true)
	s.health.Shutdown()
	time.Sleep(sc.DrainDelay)

	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(sc.DrainTimeout):
		s.logger.Warn("drain timeout: closing remaining calls")
		s.grpc.Stop()
		<-stopped
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.admin.Shutdown(ctx)
	s.logger.Info("drained")
}

// close releases what newService built. Call it after serve returns (or
// instead of serve).
func (s *service) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.running() {
		a.stop()
	}
	s.cancelBase()
	if s.grpcLis != nil {
		_ = s.grpcLis.Close()
	}
	if s.adminLis != nil {
		_ = s.adminLis.Close()
	}
	return s.env.close()
}

// ready returns nil when the service can decide requests.
func (s *service) ready() error {
	if s.draining.Load() {
		return errors.New("draining")
	}
	if p := s.redisDown.Load(); p != nil && *p != nil {
		return fmt.Errorf("redis: %w", *p)
	}
	var errs []error
	for _, a := range s.running() {
		errs = append(errs, a.ready())
	}
	return errors.Join(errs...)
}

// watchRedis pings Redis every second for readiness (only with
// redis.required_for_readiness).
func (s *service) watchRedis(ctx context.Context) {
	cli, err := s.env.redis()
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

func (s *service) setServing(ok bool) {
	st := healthpbNotServing
	if ok {
		st = healthpbServing
	}
	for _, name := range healthServices {
		s.health.SetServingStatus(name, st)
	}
}

// watchReadiness keeps the gRPC health status in step with ready().
func (s *service) watchReadiness(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := false
	first := true
	for {
		err := s.ready()
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

// watchConfig reloads on SIGHUP and when the file's content changes.
// Content, not mtime, is compared: a Kubernetes ConfigMap update swaps a
// symlink and keeps old timestamps.
func (s *service) watchConfig(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	s.mu.Lock()
	iv := s.cfg.Server.ReloadInterval
	s.mu.Unlock()
	if iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = s.reload("sighup")
		case <-tick:
			sum, err := fileSum(s.path)
			s.mu.Lock()
			changed := err == nil && sum != s.sum
			s.mu.Unlock()
			if changed {
				_ = s.reload("file changed")
			}
		}
	}
}

func fileSum(path string) ([sha256.Size]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// reload reads the config file again and, if it is valid and its
// authenticators become ready, swaps in the new pipeline. A bad file is
// rejected with a log line and the old config keeps serving. Sections that
// cannot change without a restart (listeners, redis) keep their old values.
func (s *service) reload(why string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum, _ := fileSum(s.path)
	s.sum = sum // a bad file is reported once, not every poll
	cfg, err := loadConfig(s.path, s.getenv)
	if err != nil {
		s.tel.reloads.WithLabelValues("failure").Inc()
		s.logger.Error("config reload rejected", "reason", why, "error", err)
		return err
	}
	for _, sec := range []struct {
		name     string
		old, new any
	}{
		{"server", s.cfg.Server, cfg.Server},
		{"admin", s.cfg.Admin, cfg.Admin},
		{"redis", s.cfg.Redis, cfg.Redis},
		{"telemetry", s.cfg.Telemetry, cfg.Telemetry},
	} {
		if !reflect.DeepEqual(sec.old, sec.new) {
			s.logger.Warn("config section changed; restart to apply it", "section", sec.name)
		}
	}
	cfg.Server, cfg.Admin, cfg.Redis, cfg.Telemetry = s.cfg.Server, s.cfg.Admin, s.cfg.Redis, s.cfg.Telemetry

	commitLimits, warnLimits, err := s.rl.prepareReload(cfg)
	if warnLimits {
		s.logger.Warn("config section changed; restart to apply it", "section", "rate_limit")
	}
	var auths map[string]*runningAuth
	if err == nil {
		auths, err = s.buildAuthenticators(cfg)
	}
	if err == nil {
		var p *authz.Pipeline
		if p, err = s.buildPipeline(cfg, auths); err == nil {
			if err = s.startAndAwait(auths); err == nil {
				commitLimits()
				s.swap(cfg, auths, p)
				s.tel.reloads.WithLabelValues("success").Inc()
				s.logger.Info("config reloaded", "reason", why)
				return nil
			}
		}
	}
	for name, a := range auths {
		if s.running()[name] != a {
			a.stop()
		}
	}
	err = cfg.annotate(err)
	s.tel.reloads.WithLabelValues("failure").Inc()
	s.logger.Error("config reload rejected", "reason", why, "error", err)
	return err
}

// startAndAwait starts new authenticators' background work and waits for
// them to be ready, so a reload never swaps in a pipeline that cannot
// verify (a JWKS issuer without keys yet).
func (s *service) startAndAwait(auths map[string]*runningAuth) error {
	for name, a := range auths {
		if s.running()[name] != a {
			a.start(s.base, s.logger)
		}
	}
	deadline := time.Now().Add(s.reloadWait)
	for {
		var errs []error
		for _, a := range auths {
			errs = append(errs, a.ready())
		}
		err := errors.Join(errs...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *service) swap(cfg *fileConfig, auths map[string]*runningAuth, p *authz.Pipeline) {
	old := s.running()
	cfg.compiled()
	s.cfg = cfg
	s.auths.Store(&auths)
	s.live.Store(p)
	for name, a := range old {
		if auths[name] != a {
			a.stop()
		}
	}
}
