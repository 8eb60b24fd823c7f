package rls_test

import (
	"context"
	"testing"

	pb_struct "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

// TestOverrideUnits: each override unit against the contract rules (user:
// 5/minute), as envoyproxy/ratelimit reads it (the differential test
// checks the same against the reference): the units of Envoy's enum and 7
// (WEEK in the response's enum, which the reference converts to by
// number) apply; UNKNOWN and numbers no enum has, which crash the
// reference, are ignored and the configured limit applies; 0 requests per
// unit denies every counted hit.
func TestOverrideUnits(t *testing.T) {
	tests := []struct {
		give         typev3.RateLimitUnit
		giveRequests uint32
		wantUnit     pb.RateLimitResponse_RateLimit_Unit
		wantRequests uint32
		wantCode     pb.RateLimitResponse_Code
	}{
		{typev3.RateLimitUnit_SECOND, 3, pb.RateLimitResponse_RateLimit_SECOND, 3, pb.RateLimitResponse_OK},
		{typev3.RateLimitUnit_HOUR, 3, pb.RateLimitResponse_RateLimit_HOUR, 3, pb.RateLimitResponse_OK},
		{typev3.RateLimitUnit_MONTH, 3, pb.RateLimitResponse_RateLimit_MONTH, 3, pb.RateLimitResponse_OK},
		{typev3.RateLimitUnit_YEAR, 3, pb.RateLimitResponse_RateLimit_YEAR, 3, pb.RateLimitResponse_OK},
		{7, 3, pb.RateLimitResponse_RateLimit_WEEK, 3, pb.RateLimitResponse_OK},
		{typev3.RateLimitUnit_DAY, 0, pb.RateLimitResponse_RateLimit_DAY, 0, pb.RateLimitResponse_OVER_LIMIT},
		{typev3.RateLimitUnit_UNKNOWN, 3, pb.RateLimitResponse_RateLimit_MINUTE, 5, pb.RateLimitResponse_OK},
		{8, 3, pb.RateLimitResponse_RateLimit_MINUTE, 5, pb.RateLimitResponse_OK},
		{-1, 3, pb.RateLimitResponse_RateLimit_MINUTE, 5, pb.RateLimitResponse_OK},
	}
	for _, tt := range tests {
		t.Run(tt.give.String(), func(t *testing.T) {
			c := serve(t, rls.New(limiter(t, memory.New(memory.Options{}), ratelimit.Options{}), rls.Options{}))
			resp, err := c.ShouldRateLimit(context.Background(), &pb.RateLimitRequest{Domain: "contract", Descriptors: []*pb_struct.RateLimitDescriptor{{
				Entries: []*pb_struct.RateLimitDescriptor_Entry{{Key: "user", Value: "u"}},
				Limit:   &pb_struct.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: tt.giveRequests, Unit: tt.give},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			st := resp.GetStatuses()[0]
			if st.GetCode() != tt.wantCode || st.GetCurrentLimit().GetUnit() != tt.wantUnit || st.GetCurrentLimit().GetRequestsPerUnit() != tt.wantRequests {
				t.Errorf("got %v, want %v under %d per %v", st, tt.wantCode, tt.wantRequests, tt.wantUnit)
			}
		})
	}
}
