package server

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"

	"golang.org/x/net/netutil"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/authz/httpauthz"
	"github.com/ext-authz/ext-authz/authz/transport"
	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/grpcedge"
	"github.com/ext-authz/ext-authz/internal/grpcserver"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

const (
	healthpbServing    = healthgrpc.HealthCheckResponse_SERVING
	healthpbNotServing = healthgrpc.HealthCheckResponse_NOT_SERVING
)

// streamWorkers is the number of goroutines grpc-go keeps to run calls
// on: the load driver's 64 streams in flight on two cores showed ~10 %
// less server CPU per Check with 64 than with none or one per core
// (loadtest/RESULTS.md). Idle workers cost a goroutine stack each.
const streamWorkers = 64

// newGRPCServer builds the gRPC server with its limits and registers
// Check, health and reflection.
func (s *Server) newGRPCServer(c *generation.ServerConfig) *grpc.Server {
	ka := keepalive.ServerParameters{Time: c.Keepalive.Time, Timeout: c.Keepalive.Timeout}
	if c.MaxConnectionAge > 0 {
		ka.MaxConnectionAge = c.MaxConnectionAge
		ka.MaxConnectionAgeGrace = c.DrainTimeout
	}
	if c.Edge.MaxConnectionIdle > 0 {
		ka.MaxConnectionIdle = c.Edge.MaxConnectionIdle
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(ka),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: c.Keepalive.MinTime, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(c.MaxConcurrentStreams),
		grpc.ConnectionTimeout(c.Edge.HandshakeTimeout),
		grpc.InTapHandle(grpcedge.CallDeadline([]string{authv3.Authorization_Check_FullMethodName,
			rlsv3.RateLimitService_ShouldRateLimit_FullMethodName}, c.Edge.CallDeadline)),
		grpc.MaxRecvMsgSize(c.MaxRecvMessageBytes),
		// Calls run on up to streamWorkers long-lived goroutines whose
		// stacks have already grown through the handler; a fresh goroutine
		// per call spent ~15 % of the CPU growing its stack (loadtest
		// profile). Beyond that many at once, a call gets its own
		// goroutine as before.
		grpc.NumStreamWorkers(streamWorkers),
		// A CheckRequest Go's protobuf cannot decode (invalid UTF-8, too
		// deep) is answered 400 and counted, not failed with INTERNAL.
		grpc.ForceServerCodecV2(extauthz.Codec{}),
		// Admission runs inside recovery: a refused call never reaches the
		// handler, and a panic still releases its turn.
		grpc.ChainUnaryInterceptor(s.tel.GRPC.Unary(), grpcserver.RecoverUnary(s.logger), s.admission.admitUnary()),
		grpc.ChainStreamInterceptor(s.tel.GRPC.Stream(), grpcserver.RecoverStream(s.logger)),
	}
	// The stats handler copies every call's metadata even when nothing is
	// recorded (a load-test profile showed it), so it is installed only
	// with tracing on.
	if s.tel.Tracing() {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(s.tel.TracerProvider),
			otelgrpc.WithPropagators(s.tel.Propagator),
			otelgrpc.WithMeterProvider(noopmetric.NewMeterProvider()),
			// Check makes its own server span, parented on the trace
			// context inside the CheckRequest's HTTP headers, which this
			// handler cannot see; health checks are noise.
			otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
				return info.FullMethodName != authv3.Authorization_Check_FullMethodName &&
					!strings.HasPrefix(info.FullMethodName, "/grpc.health.v1.")
			}),
		)))
	}
	srv := grpc.NewServer(opts...)
	eopts := extauthz.Options{
		Metrics: s.checkMetrics,
		Observe: s.decisions.observe,
	}
	if s.tel.Tracing() {
		eopts.Tracer, eopts.Propagator = s.tel.Tracer, s.tel.Propagator
	}
	// Check on the lean wire path (decoded and answered without messages,
	// through the Codec above); same service, same answers.
	extauthz.Register(srv, extauthz.New(s.candidate, eopts))
	if rl := s.rl; rl != nil && !rl.Config.Service.Disabled {
		// ShouldRateLimit on its lean wire path too (rls.Register).
		rls.Register(srv, rls.New(rl.Limiter, rls.Options{ResponseHeaders: rl.Config.Service.ResponseHeaders}))
	}
	healthgrpc.RegisterHealthServer(srv, s.health)
	reflection.Register(srv)
	s.tel.GRPC.Initialize(srv)
	return srv
}

// serveGRPC serves the gRPC server on lis behind the server.edge bounds
// (connection cap, early-reset budget, write timeout).
func (s *Server) serveGRPC(lis net.Listener) error {
	sc := s.cfg().Server // restart-only: a reload keeps the running values
	el, maxConns, err := s.edgeListener(lis, &sc)
	if err != nil {
		return err
	}
	s.logger.Info("grpc edge limits", "max_connections", maxConns, "stream_reset_budget", sc.Edge.StreamResetBudget,
		"max_connection_idle", sc.Edge.MaxConnectionIdle.String(), "write_timeout", sc.Edge.WriteTimeout.String())
	return s.grpc.Serve(el)
}

// newHTTPServer builds the HTTP ext_authz server (nil when
// server.http_address is empty): the same pipeline, decision series,
// decision log, tracing and admission control as Check, behind bounded
// headers and timeouts.
func (s *Server) newHTTPServer(c *generation.ServerConfig) *http.Server {
	if c.HTTPAddress == "" {
		return nil
	}
	opts := httpauthz.Options{
		Core:         transport.Options{Metrics: s.checkMetrics.Decisions(), Observe: s.decisions.observe},
		PathPrefix:   c.HTTP.PathPrefix,
		Admission:    s.admission.c,
		CallDeadline: max(c.Edge.CallDeadline, 0),
		Logger:       s.logger,
	}
	if s.tel.Tracing() {
		opts.Core.Tracer, opts.Core.Propagator = s.tel.Tracer, s.tel.Propagator
	}
	return &http.Server{
		Handler:           httpauthz.New(s.candidate, opts),
		MaxHeaderBytes:    c.HTTP.MaxHeaderBytes,
		ReadHeaderTimeout: c.HTTP.ReadHeaderTimeout,
		// The whole request, body included, within the same bound: Envoy
		// sends a check's body (with_request_body) with its headers. The
		// handler never reads a body, and net/http then reads up to 256
		// KiB of what is left to reuse the connection; without a read
		// deadline a client trickling a byte now and then holds the
		// connection, its goroutine and a place under max_connections for
		// ever. (A check still running when it passes has its context
		// ended: Envoy's own timeout, a fraction of a second, is long
		// gone.)
		ReadTimeout:  c.HTTP.ReadHeaderTimeout,
		WriteTimeout: c.HTTP.WriteTimeout,
		IdleTimeout:  c.HTTP.IdleTimeout,
		// net/http logs malformed requests and TLS noise here; a request
		// line may hold a credential in its query, so it goes to the
		// service's logger at debug, where the request is not printed.
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
}

// serveHTTP serves the HTTP ext_authz server on lis, with at most
// server.edge.max_connections connections open at once.
func (s *Server) serveHTTP(lis net.Listener) error {
	sc := s.cfg().Server // restart-only
	if n := sc.Edge.MaxConnections; n > 0 {
		lis = netutil.LimitListener(lis, n)
	}
	if err := s.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
