package rls_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb_struct "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

// rawCodec sends and receives a message's wire bytes as they are, for
// requests the generated client cannot build (malformed wire forms).
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// concurrentRequest is call u's request: descriptors of its own (values
// no other call uses, so every counter starts at zero), some with a
// limit override whose requests_per_unit names the call, some under
// the configured per-user limit; every seventh call large enough to
// arrive in several HTTP/2 frames (several buffers for the codec), half
// of the others in one pooled buffer.
func concurrentRequest(u int) (*pb.RateLimitRequest, []uint32) {
	m := &pb.RateLimitRequest{Domain: "contract", HitsAddend: uint32(1 + u%3)}
	pad := ""
	switch {
	case u%7 == 0:
		pad = strings.Repeat("p", 40<<10)
	case u%2 == 0:
		// Above grpc-go's pooling threshold: the request arrives in a
		// pooled buffer that grpc-go frees as soon as it is decoded.
		pad = strings.Repeat("q", 2<<10)
	}
	var want []uint32 // each descriptor's limit_remaining
	for j := range 1 + u%5 {
		d := &pb_struct.RateLimitDescriptor{}
		value := fmt.Sprintf("c%d-d%d-%s", u, j, pad)
		hits := uint32(1 + u%3)
		if j%2 == 0 {
			rpu := uint32(1000 + u*8 + j)
			d.Entries = []*pb_struct.RateLimitDescriptor_Entry{{Key: "exact", Value: value}}
			d.Limit = &pb_struct.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: typev3.RateLimitUnit_HOUR}
			if u%4 == 0 {
				hits = uint32(j)
				d.HitsAddend = wrapperspb.UInt64(uint64(hits))
			}
			want = append(want, rpu-hits)
		} else {
			d.Entries = []*pb_struct.RateLimitDescriptor_Entry{{Key: "user", Value: value}}
			want = append(want, 5-hits) // per-user: 5 a minute
		}
		m.Descriptors = append(m.Descriptors, d)
	}
	return m, want
}

// TestLeanConcurrentAnswers: many calls at once over a real socket, on
// several connections, each answer the one for its own request: the
// decoded strings do not alias a receive buffer grpc-go reuses (a later
// call would rewrite an earlier one's keys, and counters would be
// charged to the wrong descriptor), and a pooled answer buffer is not
// reused while grpc-go still writes it. Each answer is also the
// generated path's for the same request (proto.Equal), compressed calls
// are answered as the others, and malformed and refused requests mixed
// in get their errors, not someone's answer.
func TestLeanConcurrentAnswers(t *testing.T) {
	const (
		conns   = 4
		workers = 32
		calls   = 150 // per worker
	)
	lean := rls.New(limiter(t, memory.New(memory.Options{}), ratelimit.Options{}), rls.Options{ResponseHeaders: true})
	ref := servePath(t, rls.New(limiter(t, memory.New(memory.Options{}), ratelimit.Options{}), rls.Options{ResponseHeaders: true}), "proto")
	addr := serveLeanAddr(t, lean)
	clients := make([]*grpc.ClientConn, conns)
	for i := range clients {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		clients[i] = conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := clients[w%conns]
			c := pb.NewRateLimitServiceClient(conn)
			for i := range calls {
				u := w*calls + i
				if err := concurrentCall(ctx, conn, c, ref, u); err != nil {
					errs <- fmt.Errorf("call %d: %w", u, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func concurrentCall(ctx context.Context, conn *grpc.ClientConn, c, ref pb.RateLimitServiceClient, u int) error {
	switch u % 10 {
	case 3: // malformed: a descriptor whose length runs past the end
		in := []byte{0x0a, 0x08, 'c', 'o', 'n', 't', 'r', 'a', 'c', 't', 0x12, 0x09, 0x0a}
		var out []byte
		err := conn.Invoke(ctx, pb.RateLimitService_ShouldRateLimit_FullMethodName, &in, &out, grpc.ForceCodecV2(rawCodec{}))
		if status.Code(err) != codes.Internal {
			return fmt.Errorf("malformed request: %w, want INTERNAL", err)
		}
		return nil
	case 6: // refused: no domain
		m, _ := concurrentRequest(u)
		m.Domain = ""
		_, err := c.ShouldRateLimit(ctx, m)
		if status.Code(err) != codes.InvalidArgument {
			return fmt.Errorf("request without a domain: %w, want INVALID_ARGUMENT", err)
		}
		return nil
	}
	m, want := concurrentRequest(u)
	var opts []grpc.CallOption
	if u%10 == 8 {
		// Compressed: grpc-go hands the codec the request as
		// decompressed into buffers of its own, and compresses the
		// answer from the pooled buffer.
		opts = append(opts, grpc.UseCompressor(gzip.Name))
	}
	got, err := c.ShouldRateLimit(ctx, m, opts...)
	if err != nil {
		return err
	}
	if len(got.GetStatuses()) != len(want) || got.GetOverallCode() != pb.RateLimitResponse_OK {
		return fmt.Errorf("answer %v for %d descriptors", got, len(want))
	}
	for j, st := range got.GetStatuses() {
		if st.GetLimitRemaining() != want[j] || st.GetCode() != pb.RateLimitResponse_OK {
			return fmt.Errorf("descriptor %d: %v, want remaining %d", j, st, want[j])
		}
		if j%2 == 0 && st.GetCurrentLimit().GetRequestsPerUnit() != m.Descriptors[j].Limit.RequestsPerUnit {
			return fmt.Errorf("descriptor %d: limit %v, want its override %d", j, st.GetCurrentLimit(), m.Descriptors[j].Limit.RequestsPerUnit)
		}
	}
	wantResp, err := ref.ShouldRateLimit(ctx, m)
	if err != nil {
		return err
	}
	if !proto.Equal(got, wantResp) {
		return fmt.Errorf("answer\n%v\ngenerated path's\n%v", got, wantResp)
	}
	return nil
}

// serveLeanAddr runs s on the lean path on a loopback socket and returns
// its address.
func serveLeanAddr(t *testing.T, s *rls.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodecV2(extauthz.Codec{}))
	rls.Register(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}
