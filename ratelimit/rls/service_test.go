package rls_test

import (
	"context"
	"testing"
	"time"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/ratelimit/ratelimittest"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

// TestLeanAnswerIsPooled: the lean handler's answer is a buffer grpc-go
// returns to the pool once written (a SliceBuffer, which it makes of any
// buffer of 1 KiB or less, would be garbage every call), and it is the
// answer the generated handler gives.
func TestLeanAnswerIsPooled(t *testing.T) {
	l := ratelimit.New(memory.New(memory.Options{}), ratelimittest.Rules(t), ratelimit.Options{Timeout: time.Second, Now: ratelimittest.NewClock(time.Unix(1_700_000_025, 0)).Now})
	srv := rls.New(l, rls.Options{ResponseHeaders: true})
	raw, err := proto.Marshal(benchRequest("contract", "user", "tenant"))
	if err != nil {
		t.Fatal(err)
	}
	data := mem.BufferSlice{mem.SliceBuffer(raw)}
	dec := func(v any) error { return (extauthz.Codec{}).Unmarshal(data, v) }
	for i := range 3 {
		resp, err := rls.LeanServiceDesc.Methods[0].Handler(srv, context.Background(), dec, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, ok := resp.(mem.Buffer)
		if !ok {
			t.Fatalf("answer is a %T, want a mem.Buffer", resp)
		}
		if _, slice := b.(mem.SliceBuffer); slice {
			t.Fatalf("answer is a SliceBuffer: grpc-go will not return it to the pool")
		}
		var got pb.RateLimitResponse
		if err := proto.Unmarshal(b.ReadOnlyData(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.GetStatuses()) != 2 || got.GetStatuses()[1].GetLimitRemaining() != uint32(2-i) || len(got.GetResponseHeadersToAdd()) != 3 {
			t.Fatalf("call %d: answer %v", i, &got)
		}
		b.Free()
	}
}
