package extauthz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/answerbuf"
)

// Register registers s as envoy.service.auth.v3.Authorization on srv with
// the lean wire path: the Codec decodes a CheckRequest straight into an
// authz.Request (DecodeCheckRequest) and the answer is written straight
// into its wire form (AppendCheckResponse), with no message in between.
// The server must use the Codec (grpc.ForceServerCodecV2(Codec{})); every
// other service on it keeps grpc-go's proto codec. Clients see the same
// service, the same messages and the same answers as with
// authv3.RegisterAuthorizationServer, and reflection describes it the same
// way.
func Register(srv grpc.ServiceRegistrar, s *Server) {
	srv.RegisterService(&leanServiceDesc, s)
}

var leanServiceDesc = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: authv3.Authorization_ServiceDesc.HandlerType,
	Methods:     []grpc.MethodDesc{{MethodName: "Check", Handler: leanCheckHandler}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    authv3.Authorization_ServiceDesc.Metadata,
}

// checkCall is a CheckRequest as the Codec decoded it for the lean path:
// the request, or why it could not be read; and the decision on it, kept
// here because this object is on the heap anyway (see
// transport.Core.DecideInto).
type checkCall struct {
	req        authz.Request
	unreadable string
	dec        authz.Decision
}

// leanCheckHandler is the generated Check handler with checkCall and a
// wire-form answer in place of the messages; interceptors see the same
// method name, the same info and run the same way. The info and the
// handler passed to them are the Server's own, made once: the generated
// code allocates both on every call.
func leanCheckHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(checkCall)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*Server)
	if interceptor == nil {
		return s.checkWire(ctx, in), nil
	}
	return interceptor(ctx, in, s.checkInfo, s.checkHandler)
}

// checkWire decides a decoded Check and returns the CheckResponse's wire
// form, in a pooled buffer that grpc-go frees once it is written.
func (s *Server) checkWire(ctx context.Context, c *checkCall) mem.Buffer {
	var rid string
	if c.unreadable != "" {
		c.dec = s.unreadableDecision(ctx, c.unreadable)
	} else {
		s.core.DecideInto(ctx, &c.req, checkSpan, &c.dec)
		rid = c.req.RequestID
	}
	bp := responseBuffers.Get(0)
	*bp = AppendCheckResponse((*bp)[:0], &c.dec, rid)
	return mem.NewBuffer(bp, responseBuffers)
}

// responseBuffers recycles the buffers answers are written into.
var responseBuffers = &answerbuf.Pool{}
