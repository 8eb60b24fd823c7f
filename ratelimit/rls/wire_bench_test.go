package rls_test

import (
	"context"
	"testing"
	"time"

	pb_struct "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/ratelimit/ratelimittest"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

// benchRequest is the load driver's request (loadtest/cmd/authzload,
// scenario rls): two descriptors, the route and user, and the route's
// global budget, with hits_addend 1.
func benchRequest(domain, k1, k2 string) *pb.RateLimitRequest {
	return &pb.RateLimitRequest{Domain: domain, HitsAddend: 1, Descriptors: []*pb_struct.RateLimitDescriptor{
		{Entries: []*pb_struct.RateLimitDescriptor_Entry{{Key: "generic_key", Value: "limited"}, {Key: k1, Value: "user-0042"}}},
		{Entries: []*pb_struct.RateLimitDescriptor_Entry{{Key: k2, Value: "trial-user-0042"}}},
	}}
}

// BenchmarkDecodeRequest: the generated path (proto.Unmarshal, fromProto)
// against DecodeRequest.
func BenchmarkDecodeRequest(b *testing.B) {
	raw, err := proto.Marshal(benchRequest("loadtest", "user", "tenant"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("impl=proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m pb.RateLimitRequest
			if err := proto.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
			if req, err := rls.FromProto(&m); err != nil || len(req.Descriptors) != 2 {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=lean", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req, invalid, err := rls.DecodeRequest(raw)
			if err != nil || invalid != nil || len(req.Descriptors) != 2 {
				b.Fatal(err, invalid)
			}
		}
	})
}

// BenchmarkEncodeResponse: toProto and a proto.Marshal against
// AppendResponse into a reused buffer, for two counted descriptors.
func BenchmarkEncodeResponse(b *testing.B) {
	res := ratelimit.Result{Statuses: []ratelimit.Status{
		{Limit: &ratelimit.Limit{Name: "limited-per-user", Requests: 1000, Unit: ratelimit.Second}, Remaining: 993, ResetAfter: 400 * time.Millisecond},
		{Limit: &ratelimit.Limit{Name: "limited-global", Requests: 10000000, Unit: ratelimit.Second}, Remaining: 9991234, ResetAfter: 400 * time.Millisecond},
	}}
	for _, headers := range []bool{false, true} {
		name := "headers=false"
		if headers {
			name = "headers=true"
		}
		b.Run(name+"/impl=proto", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if out, err := proto.Marshal(rls.ToProto(res, 2, headers)); err != nil || len(out) < 20 {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/impl=lean", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				if buf = rls.AppendResponse(buf[:0], &res, 2, headers); len(buf) < 20 {
					b.Fatal(len(buf))
				}
			}
		})
	}
}

// BenchmarkRLSHandler is the whole ShouldRateLimit as the gRPC server runs
// it without the network: the codec's Unmarshal, the service handler (the
// generated one and Server.ShouldRateLimit, or the lean one), the limiter
// on the in-memory store, and the codec's Marshal of the answer, freed as
// grpc-go frees it.
func BenchmarkRLSHandler(b *testing.B) {
	l := ratelimit.New(memory.New(memory.Options{}), ratelimittest.Rules(b), ratelimit.Options{Timeout: time.Second, LocalCacheSize: -1})
	srv := rls.New(l, rls.Options{})
	raw, err := proto.Marshal(benchRequest("contract", "user", "tenant"))
	if err != nil {
		b.Fatal(err)
	}
	data := mem.BufferSlice{mem.SliceBuffer(raw)}
	dec := func(v any) error { return (extauthz.Codec{}).Unmarshal(data, v) }
	for _, c := range []struct {
		name    string
		handler grpc.MethodHandler
	}{
		{"impl=proto", pb.RateLimitService_ServiceDesc.Methods[0].Handler},
		{"impl=lean", rls.LeanServiceDesc.Methods[0].Handler},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				resp, err := c.handler(srv, ctx, dec, nil)
				if err != nil {
					b.Fatal(err)
				}
				out, err := (extauthz.Codec{}).Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				if out.Len() < 10 {
					b.Fatalf("answer of %d bytes", out.Len())
				}
				out.Free()
			}
		})
	}
}
