package rls

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// Checker decides a rate-limit request; *ratelimit.Limiter is one.
type Checker interface {
	Check(ctx context.Context, req ratelimit.Request) (ratelimit.Result, error)
}

// Options are the optional parts of a Server; the zero value works.
type Options struct {
	// ResponseHeaders adds RateLimit-Limit, RateLimit-Remaining and
	// RateLimit-Reset for the descriptor envoyproxy/ratelimit reports with
	// LIMIT_RESPONSE_HEADERS_ENABLED (ratelimit.Result.Reported).
	ResponseHeaders bool
}

// Server implements pb.RateLimitServiceServer.
type Server struct {
	pb.UnimplementedRateLimitServiceServer
	limiter Checker
	headers bool
}

var _ pb.RateLimitServiceServer = (*Server)(nil)

// New returns a Server deciding with l.
func New(l Checker, opts Options) *Server {
	return &Server{limiter: l, headers: opts.ResponseHeaders}
}

// Maximum sizes of a request, so one call cannot make unbounded work.
const (
	maxDescriptors = 64
	maxEntries     = 32
)

// ShouldRateLimit implements pb.RateLimitServiceServer.
func (s *Server) ShouldRateLimit(ctx context.Context, in *pb.RateLimitRequest) (*pb.RateLimitResponse, error) {
	req, err := fromProto(in)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	// A store failure is counted in the limiter's metrics (not logged per
	// call: an outage would flood the log); res is what the domain's
	// failure policy says.
	res, _ := s.limiter.Check(ctx, req)
	if res.Code == ratelimit.Unavailable {
		return nil, status.Error(codes.Unavailable, "rate limit store unavailable")
	}
	return s.toProto(res, len(req.Descriptors)), nil
}

// The requests the service refuses with INVALID_ARGUMENT.
var (
	errEmptyDomain        = errors.New("rate limit domain must not be empty")
	errNoDescriptors      = errors.New("rate limit descriptor list must not be empty")
	errTooManyDescriptors = errors.New("too many descriptors (at most 64)")
	errTooManyEntries     = errors.New("too many descriptor entries (at most 32)")
	errNegativeHits       = errors.New("is_negative_hits is not supported")
)

func fromProto(in *pb.RateLimitRequest) (ratelimit.Request, error) {
	switch {
	case in.GetDomain() == "":
		return ratelimit.Request{}, errEmptyDomain
	case len(in.GetDescriptors()) == 0:
		return ratelimit.Request{}, errNoDescriptors
	case len(in.GetDescriptors()) > maxDescriptors:
		return ratelimit.Request{}, errTooManyDescriptors
	}
	req := ratelimit.Request{Domain: in.GetDomain(), Descriptors: make([]ratelimit.Descriptor, len(in.GetDescriptors()))}
	hits := uint64(max(1, in.GetHitsAddend()))
	for i, pd := range in.GetDescriptors() {
		if len(pd.GetEntries()) > maxEntries {
			return ratelimit.Request{}, errTooManyEntries
		}
		if pd.GetIsNegativeHits() {
			return ratelimit.Request{}, errNegativeHits
		}
		d := &req.Descriptors[i]
		d.Entries = make([]ratelimit.Entry, len(pd.GetEntries()))
		for j, e := range pd.GetEntries() {
			d.Entries[j] = ratelimit.Entry{Key: e.GetKey(), Value: e.GetValue()}
		}
		d.Hits = hits
		if pd.GetHitsAddend() != nil {
			d.Hits = pd.GetHitsAddend().GetValue() // 0 checks without counting
		}
		if o := pd.GetLimit(); o != nil {
			d.Override = overrideLimit(in.GetDomain(), d.Entries, o.GetRequestsPerUnit(), int32(o.GetUnit()))
		}
	}
	return req, nil
}

// unitWeek is the override unit 7: Envoy's type.v3.RateLimitUnit has no
// WEEK, but envoyproxy/ratelimit converts the override's unit to the
// response's enum by number, where 7 is WEEK, so a client that sends 7
// gets a weekly limit there and here alike.
const unitWeek = typev3.RateLimitUnit(pb.RateLimitResponse_RateLimit_WEEK)

// overrideLimit turns a descriptor's limit override into a Limit; an
// override with a unit the limiter does not know (UNKNOWN, or a number no
// enum has) is ignored and the configured limit applies
// (envoyproxy/ratelimit panics on it and the process exits).
func overrideLimit(domain string, entries []ratelimit.Entry, requests uint32, unitNumber int32) *ratelimit.Limit {
	var unit ratelimit.Unit
	switch typev3.RateLimitUnit(unitNumber) {
	case typev3.RateLimitUnit_SECOND:
		unit = ratelimit.Second
	case typev3.RateLimitUnit_MINUTE:
		unit = ratelimit.Minute
	case typev3.RateLimitUnit_HOUR:
		unit = ratelimit.Hour
	case typev3.RateLimitUnit_DAY:
		unit = ratelimit.Day
	case typev3.RateLimitUnit_MONTH:
		unit = ratelimit.Month
	case typev3.RateLimitUnit_YEAR:
		unit = ratelimit.Year
	case unitWeek:
		unit = ratelimit.Week
	default:
		return nil
	}
	n := len(domain)
	for _, e := range entries {
		n += 1 + len(e.Key)
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(domain)
	for _, e := range entries {
		sb.WriteByte('.')
		sb.WriteString(e.Key)
	}
	return &ratelimit.Limit{Policy: sb.String(), Requests: requests, Unit: unit}
}

var units = map[ratelimit.Unit]pb.RateLimitResponse_RateLimit_Unit{
	ratelimit.Second: pb.RateLimitResponse_RateLimit_SECOND,
	ratelimit.Minute: pb.RateLimitResponse_RateLimit_MINUTE,
	ratelimit.Hour:   pb.RateLimitResponse_RateLimit_HOUR,
	ratelimit.Day:    pb.RateLimitResponse_RateLimit_DAY,
	ratelimit.Week:   pb.RateLimitResponse_RateLimit_WEEK,
	ratelimit.Month:  pb.RateLimitResponse_RateLimit_MONTH,
	ratelimit.Year:   pb.RateLimitResponse_RateLimit_YEAR,
}

func (s *Server) toProto(res ratelimit.Result, n int) *pb.RateLimitResponse {
	out := &pb.RateLimitResponse{OverallCode: pb.RateLimitResponse_OK, Statuses: make([]*pb.RateLimitResponse_DescriptorStatus, n)}
	if res.Code == ratelimit.OverLimit {
		out.OverallCode = pb.RateLimitResponse_OVER_LIMIT
	}
	if res.Failed {
		// Fail open: every descriptor OK; fail closed with 429: every one
		// over the limit. No limit is known.
		code := pb.RateLimitResponse_OK
		if res.Code == ratelimit.OverLimit {
			code = pb.RateLimitResponse_OVER_LIMIT
		}
		for i := range out.Statuses {
			out.Statuses[i] = &pb.RateLimitResponse_DescriptorStatus{Code: code}
		}
		return out
	}
	for i := range out.Statuses {
		st := &res.Statuses[i]
		ds := &pb.RateLimitResponse_DescriptorStatus{Code: pb.RateLimitResponse_OK, LimitRemaining: st.Remaining}
		if st.Code == ratelimit.OverLimit {
			ds.Code = pb.RateLimitResponse_OVER_LIMIT
		}
		if lm := st.Limit; lm != nil {
			if lm.Unlimited {
				ds.LimitRemaining = math.MaxUint32
			} else {
				ds.CurrentLimit = &pb.RateLimitResponse_RateLimit{Name: lm.Name, RequestsPerUnit: lm.Requests, Unit: units[lm.Unit]}
				ds.DurationUntilReset = durationpb.New(time.Duration(ceilSeconds(st.ResetAfter)) * time.Second)
			}
		}
		out.Statuses[i] = ds
	}
	if s.headers {
		out.ResponseHeadersToAdd = envoyHeaders(&res)
	}
	return out
}

// envoyHeaders are envoyproxy/ratelimit's response headers for the
// descriptor it reports (ratelimit.Result.Reported).
func envoyHeaders(res *ratelimit.Result) []*core.HeaderValue {
	i := res.Reported()
	if i < 0 {
		return nil
	}
	best := &res.Statuses[i]
	reset := ceilSeconds(best.ResetAfter)
	return []*core.HeaderValue{
		{Key: "RateLimit-Limit", Value: strconv.FormatUint(uint64(best.Limit.Requests), 10)},
		{Key: "RateLimit-Remaining", Value: strconv.FormatUint(uint64(best.Remaining), 10)},
		{Key: "RateLimit-Reset", Value: strconv.FormatInt(reset, 10)},
	}
}

// ceilSeconds rounds up, as envoyproxy/ratelimit's whole seconds to reset
// (unit - now%unit) are never 0.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
