package server

import (
	"context"
	"errors"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ext-authz/ext-authz/internal/admission"
)

// overloadConfig is server.overload: admission control for Check and
// ShouldRateLimit (see internal/admission).
type overloadConfig = admission.Config

// grpcAdmission is admission control as a gRPC interceptor.
type grpcAdmission struct {
	c *admission.Controller
}

// newAdmission registers the overload series and returns the gRPC adapter.
func newAdmission(c overloadConfig, reg prometheus.Registerer) *grpcAdmission {
	return &grpcAdmission{c: admission.New(c, reg)}
}

// errOverloaded is what a refused call answers; Envoy turns it into its
// status_on_error.
var errOverloaded = status.Error(codes.ResourceExhausted, "ext-authz overloaded: try another replica")

// admitted are the methods admission control applies to: the decisions.
// Health and reflection stay cheap and always answer.
var admitted = map[string]bool{
	authv3.Authorization_Check_FullMethodName:             true,
	rlsv3.RateLimitService_ShouldRateLimit_FullMethodName: true,
}

// admitUnary is the interceptor.
func (a *grpcAdmission) admitUnary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !admitted[info.FullMethod] {
			return handler(ctx, req)
		}
		if err := a.c.Acquire(ctx); err != nil {
			return nil, grpcStatus(err)
		}
		defer a.c.Release()
		resp, err := handler(ctx, req)
		a.c.Done(ctx)
		return resp, err
	}
}

// grpcStatus maps an admission refusal to the gRPC answer.
func grpcStatus(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "caller's deadline passed before the call was decided")
	case errors.Is(err, admission.ErrCallerGone):
		return status.Error(codes.Canceled, "caller cancelled before the call was decided")
	}
	return errOverloaded
}
