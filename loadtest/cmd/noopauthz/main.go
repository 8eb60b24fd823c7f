package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "noopauthz:", err)
		os.Exit(1)
	}
}

// run parses flags, listens, and serves until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("noopauthz", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9999", "gRPC listen address")
	delay := fs.Duration("delay", 0, "answer every Check this much later (0: at once); only to check that the load-test judges catch a slow server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *delay < 0 {
		return fmt.Errorf("-delay %v: must not be negative", *delay)
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "noopauthz serving on %s\n", lis.Addr())
	return serve(ctx, lis, *delay)
}

// serve serves the no-op services on lis until ctx ends, then stops
// gracefully (bounded, then hard).
func serve(ctx context.Context, lis net.Listener, delay time.Duration) error {
	srv := newServer(delay)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		srv.Stop()
	}
	if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// newServer mirrors ext-authz's transport defaults (cmd/ext-authz
// server.go: keepalive 30s/10s, min ping 5s, 1024 streams, 1 MiB messages)
// so that the two differ only in what the handler does.
func newServer(delay time.Duration) *grpc.Server {
	srv := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(1024),
		grpc.MaxRecvMsgSize(1<<20),
	)
	authv3.RegisterAuthorizationServer(srv, noop{delay: delay})
	rlsv3.RegisterRateLimitServiceServer(srv, noop{delay: delay})
	h := health.NewServer()
	h.SetServingStatus("", healthgrpc.HealthCheckResponse_SERVING)
	healthgrpc.RegisterHealthServer(srv, h)
	reflection.Register(srv)
	return srv
}

// noop allows everything without looking at the request, after delay.
type noop struct {
	rlsv3.UnimplementedRateLimitServiceServer
	delay time.Duration
}

// wait sleeps for the delay, or until the call is cancelled.
func (n noop) wait(ctx context.Context) error {
	if n.delay <= 0 {
		return nil
	}
	t := time.NewTimer(n.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var (
	_           authv3.AuthorizationServer   = noop{}
	_           rlsv3.RateLimitServiceServer = noop{}
	okCheck                                  = &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}
	okRateLimit                              = &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}
)

// Check answers OK. The response is shared: gRPC only reads it.
func (n noop) Check(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if err := n.wait(ctx); err != nil {
		return nil, err
	}
	return okCheck, nil
}

// ShouldRateLimit answers OK for the whole request.
func (n noop) ShouldRateLimit(ctx context.Context, _ *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if err := n.wait(ctx); err != nil {
		return nil, err
	}
	return okRateLimit, nil
}
