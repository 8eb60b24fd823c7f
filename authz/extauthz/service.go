package extauthz

import (
	"context"
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	"github.com/ext-authz/ext-authz/authz"
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
// the request, or why it could not be read.
type checkCall struct {
	req        authz.Request
	unreadable string
}

// leanCheckHandler is the generated Check handler with checkCall and a
// wire-form answer in place of the messages; interceptors see the same
// method name and run the same way.
func leanCheckHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(checkCall)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*Server)
	if interceptor == nil {
		return s.checkWire(ctx, in), nil
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.checkWire(ctx, req.(*checkCall)), nil
	})
}

// checkWire decides a decoded Check and returns the CheckResponse's wire
// form, in a pooled buffer that grpc-go frees once it is written.
func (s *Server) checkWire(ctx context.Context, c *checkCall) mem.Buffer {
	var (
		d   authz.Decision
		rid string
	)
	if c.unreadable != "" {
		d = s.unreadableDecision(ctx, c.unreadable)
	} else {
		d = s.core.Decide(ctx, &c.req, checkSpan)
		rid = c.req.RequestID
	}
	bp := responseBuffers.Get(0)
	*bp = AppendCheckResponse((*bp)[:0], &d, rid)
	return mem.NewBuffer(bp, responseBuffers)
}

// responseBuffers recycles the buffers answers are written into.
var responseBuffers = &bufferPool{}

// bufferPool is a mem.BufferPool of growable buffers: AppendCheckResponse
// appends, so a buffer is taken empty and grows to the answer's size.
type bufferPool struct{ p sync.Pool }

// maxPooledResponse bounds the buffers kept: an answer with a large
// denial body is not worth keeping.
const maxPooledResponse = 16 << 10

func (p *bufferPool) Get(length int) *[]byte {
	if bp, ok := p.p.Get().(*[]byte); ok && cap(*bp) >= length {
		*bp = (*bp)[:length]
		return bp
	}
	b := make([]byte, length, max(length, 1024))
	return &b
}

func (p *bufferPool) Put(bp *[]byte) {
	if cap(*bp) > maxPooledResponse {
		return
	}
	p.p.Put(bp)
}
