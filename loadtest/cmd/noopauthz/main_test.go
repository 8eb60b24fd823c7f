package main

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// TestServesOKOverGRPC runs the server on a real socket and calls it with
// the generated clients, then stops it through its context.
func TestServesOKOverGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, lis, 0) }()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	callCtx, callCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer callCancel()

	// A request ext-authz would deny (no credential, no rule) is allowed.
	resp, err := authv3.NewAuthorizationClient(cc).Check(callCtx, extauthz.BuildCheckRequest(extauthz.HTTPRequest{
		Method: "GET", Host: "nowhere.example", Path: "/admin/"}))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetStatus().GetCode() != 0 || resp.GetOkResponse() == nil {
		t.Errorf("Check answered %v, want OK with an OkResponse", resp)
	}
	rl, err := rlsv3.NewRateLimitServiceClient(cc).ShouldRateLimit(callCtx, &rlsv3.RateLimitRequest{Domain: "d",
		Descriptors: []*rlcommon.RateLimitDescriptor{{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}}})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	if rl.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("ShouldRateLimit answered %v, want OK", rl.GetOverallCode())
	}
	h, err := healthgrpc.NewHealthClient(cc).Check(callCtx, &healthgrpc.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v; want SERVING", h.GetStatus(), err)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve returned %v after its context ended, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after its context ended")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	if err := run(context.Background(), []string{"-nope"}, io.Discard); err == nil {
		t.Error("run with an unknown flag: no error")
	}
	if err := run(context.Background(), []string{"-addr", "not an address"}, io.Discard); err == nil {
		t.Error("run with a bad address: no error")
	}
	if err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-delay", "-1s"}, io.Discard); err == nil {
		t.Error("run with a negative delay: no error")
	}
}

// TestDelay: with -delay, answers come no earlier than the delay, and a
// caller that gives up before it gets its deadline error, not a late OK.
func TestDelay(t *testing.T) {
	tests := []struct {
		name     string
		delay    time.Duration
		timeout  time.Duration
		wantCode codes.Code
	}{
		{name: "answered after the delay", delay: 50 * time.Millisecond, timeout: 10 * time.Second, wantCode: codes.OK},
		{name: "caller gives up first", delay: time.Hour, timeout: 100 * time.Millisecond, wantCode: codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- serve(ctx, lis, tt.delay) }()
			defer func() {
				cancel()
				if err := <-served; err != nil {
					t.Errorf("serve: %v", err)
				}
			}()
			cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			callCtx, callCancel := context.WithTimeout(context.Background(), tt.timeout)
			defer callCancel()
			start := time.Now()
			_, err = authv3.NewAuthorizationClient(cc).Check(callCtx, extauthz.BuildCheckRequest(extauthz.HTTPRequest{
				Method: "GET", Host: "example.com", Path: "/"}))
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("Check: %v, want code %v", err, tt.wantCode)
			}
			if tt.wantCode == codes.OK && time.Since(start) < tt.delay {
				t.Errorf("answered after %v, before the %v delay", time.Since(start), tt.delay)
			}
			_, err = rlsv3.NewRateLimitServiceClient(cc).ShouldRateLimit(callCtx, &rlsv3.RateLimitRequest{Domain: "d"})
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("ShouldRateLimit: %v, want code %v", err, tt.wantCode)
			}
		})
	}
}
