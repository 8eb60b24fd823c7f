package rls

import (
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// FromProto is fromProto, for the differential tests.
var FromProto = fromProto

// ToProto is the generated path's answer, the encoder's oracle.
func ToProto(res ratelimit.Result, n int, headers bool) *pb.RateLimitResponse {
	return (&Server{headers: headers}).toProto(res, n)
}

// LeanServiceDesc is the lean registration, for the handler benchmark.
var LeanServiceDesc = &leanServiceDesc

// Decoded is what UnmarshalWire put in c.
func (c *Call) Decoded() (ratelimit.Request, error) { return c.req, c.invalid }
