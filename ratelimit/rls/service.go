package rls

import (
	"context"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/ext-authz/ext-authz/internal/answerbuf"
	"github.com/ext-authz/ext-authz/ratelimit"
)

// Register registers s as envoy.service.ratelimit.v3.RateLimitService on
// srv with the lean wire path: ShouldRateLimit's request is decoded
// straight into a ratelimit.Request (DecodeRequest) and the answer written
// straight into its wire form (AppendResponse), with no message in
// between. The server's codec must hand a *Call its wire bytes (its
// UnmarshalWire) and send a mem.Buffer answer as it is: extauthz.Codec
// does both. Clients see the same service, messages and answers as with
// pb.RegisterRateLimitServiceServer, and reflection describes it the same
// way.
func Register(srv grpc.ServiceRegistrar, s *Server) {
	srv.RegisterService(&leanServiceDesc, s)
}

var leanServiceDesc = grpc.ServiceDesc{
	ServiceName: pb.RateLimitService_ServiceDesc.ServiceName,
	HandlerType: pb.RateLimitService_ServiceDesc.HandlerType,
	Methods:     []grpc.MethodDesc{{MethodName: "ShouldRateLimit", Handler: leanHandler}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    pb.RateLimitService_ServiceDesc.Metadata,
}

// Call is a RateLimitRequest as the codec decoded it for the lean path.
type Call struct {
	req     ratelimit.Request
	invalid error // fromProto's refusal, for INVALID_ARGUMENT
}

// UnmarshalWire decodes the request's wire form into c; the error is what
// the codec returns for a message proto.Unmarshal cannot decode (grpc-go
// then fails the call with INTERNAL, as it does with its own codec).
func (c *Call) UnmarshalWire(data mem.BufferSlice) error {
	var wireErr error
	if len(data) == 1 {
		c.req, c.invalid, wireErr = DecodeRequest(data[0].ReadOnlyData())
		return wireErr
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	c.req, c.invalid, wireErr = DecodeRequest(buf.ReadOnlyData())
	return wireErr
}

// leanHandler is the generated ShouldRateLimit handler with Call and a
// wire-form answer in place of the messages; interceptors see the same
// method name and run the same way.
func leanHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(Call)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*Server)
	if interceptor == nil {
		return s.shouldRateLimitWire(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.RateLimitService_ShouldRateLimit_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.shouldRateLimitWire(ctx, req.(*Call))
	})
}

// shouldRateLimitWire is ShouldRateLimit on a decoded Call; the answer is
// in a pooled buffer that grpc-go frees once it is written.
func (s *Server) shouldRateLimitWire(ctx context.Context, c *Call) (any, error) {
	if c.invalid != nil {
		return nil, status.Error(codes.InvalidArgument, c.invalid.Error())
	}
	res, _ := s.limiter.Check(ctx, c.req)
	if res.Code == ratelimit.Unavailable {
		return nil, status.Error(codes.Unavailable, "rate limit store unavailable")
	}
	bp := responseBuffers.Get(0)
	*bp = AppendResponse((*bp)[:0], &res, len(c.req.Descriptors), s.headers)
	return mem.NewBuffer(bp, responseBuffers), nil
}

// responseBuffers recycles the buffers answers are written into.
var responseBuffers = &answerbuf.Pool{}
