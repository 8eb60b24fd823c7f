package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/loadtest/load"
)

// scenario is what one run sends: prebuilt requests cycled through by
// sequence number, so the driver spends its CPU on sending, not building.
type scenario struct {
	name   string
	checks []*authv3.CheckRequest
	limits []*rlsv3.RateLimitRequest
	// The same requests marshalled once (prepare), for -decode lean.
	wireChecks []*wireRequest
	wireLimits []*wireRequest
	prepared   bool // the messages were dropped for their wire form
}

// scenarioOptions are the inputs of buildScenario.
type scenarioOptions struct {
	Name   string   // jwt, udb, apikey, jwt-ratelimit, public, missing, rls
	Host   string   // :authority of Check requests
	Path   string   // overrides the scenario's path
	Tokens []string // the pool, for jwt, udb, apikey, jwt-ratelimit
	Domain string   // rls domain
	Users  int      // rls: distinct users when there is no pool
}

// Scenario paths match loadtest/config/*.yaml.
var scenarioDefaults = map[string]struct {
	path   string
	header string // credential header; "authorization" gets "Bearer "
}{
	"jwt":           {"/api/orders?page=2", "authorization"},
	"udb":           {"/app/profile", "x-udb-token"},
	"apikey":        {"/api/orders?page=2", "x-api-key"},
	"jwt-ratelimit": {"/limited/orders", "authorization"},
	"public":        {"/public/index.html", ""},
	"missing":       {"/api/orders", ""},
	"rls":           {"", ""},
}

func scenarioNames() string {
	return "jwt, udb, apikey, jwt-ratelimit, public, missing, rls"
}

func buildScenario(o scenarioOptions) (*scenario, error) {
	def, ok := scenarioDefaults[o.Name]
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q (one of %s)", o.Name, scenarioNames())
	}
	s := &scenario{name: o.Name}
	if o.Name == "rls" {
		domain := o.Domain
		if domain == "" {
			domain = "loadtest"
		}
		users := make([]string, 0, max(len(o.Tokens), o.Users, 1))
		for i := range cap(users) {
			users = append(users, "user-"+strconv.Itoa(i+1))
		}
		for _, u := range users {
			// The two descriptors the gateway's route sends for /limited/:
			// per user, and the route's global budget.
			s.limits = append(s.limits, &rlsv3.RateLimitRequest{Domain: domain, HitsAddend: 1, Descriptors: []*rlcommon.RateLimitDescriptor{
				{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "generic_key", Value: "limited"}, {Key: "user", Value: u}}},
				{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "generic_key", Value: "limited-global"}}},
			}})
		}
		return s, nil
	}
	if def.header != "" && len(o.Tokens) == 0 {
		return nil, fmt.Errorf("scenario %s needs a token pool (-pool FILE, one token per line)", o.Name)
	}
	path := def.path
	if o.Path != "" {
		path = o.Path
	}
	host := o.Host
	if host == "" {
		host = "example.com"
	}
	n := max(len(o.Tokens), 1)
	for i := range n {
		hs := [][2]string{{"user-agent", "authzload"}, {"accept", "application/json"}, {"x-forwarded-proto", "https"}}
		switch def.header {
		case "authorization":
			hs = append(hs, [2]string{"authorization", "Bearer " + o.Tokens[i]})
		case "":
		default:
			hs = append(hs, [2]string{def.header, o.Tokens[i]})
		}
		s.checks = append(s.checks, extauthz.BuildCheckRequest(extauthz.HTTPRequest{
			Method: "GET", Host: host, Path: path, Headers: hs,
			RequestID: fmt.Sprintf("authzload-%06d", i),
		}))
	}
	return s, nil
}

// Decoding modes (-decode).
const (
	decodeLean = "lean" // leanCodec: prebuilt requests, answers read with protowire
	decodeFull = "full" // grpc-go's proto codec and the generated clients
)

// prepare marshals the requests once for -decode lean and drops the
// messages (a -fresh pool holds hundreds of thousands).
func (s *scenario) prepare() error {
	for i, m := range s.checks {
		w, err := newWireRequest(m)
		if err != nil {
			return err
		}
		s.wireChecks = append(s.wireChecks, w)
		s.checks[i] = nil
	}
	for i, m := range s.limits {
		w, err := newWireRequest(m)
		if err != nil {
			return err
		}
		s.wireLimits = append(s.wireLimits, w)
		s.limits[i] = nil
	}
	s.prepared = true
	return nil
}

// size is the number of distinct requests.
func (s *scenario) size() int {
	return max(len(s.checks), len(s.limits), len(s.wireChecks), len(s.wireLimits))
}

// cursor hands out request indices for -fresh: one counter per server for
// the whole measurement (warm-ups and rounds), so that no request is sent
// to the same server twice until the pool wraps, which it counts.
type cursor struct {
	n       uint64
	next    atomic.Uint64
	wrapped atomic.Uint64
}

func newCursor(n int) *cursor { return &cursor{n: uint64(max(n, 1))} }

func (c *cursor) pick(uint64) uint64 {
	i := c.next.Add(1) - 1
	if i >= c.n {
		c.wrapped.Add(1)
	}
	return i % c.n
}

// used is how many requests were handed out.
func (c *cursor) used() uint64 { return c.next.Load() }

// call returns the load.Call sending this scenario over conns, request
// seq on connection seq%len(conns). pick chooses the request for seq
// (nil: seq modulo the pool); decode is decodeLean or decodeFull.
func (s *scenario) call(conns []*grpc.ClientConn, decode string, pick func(seq uint64) uint64) load.Call {
	n := uint64(s.size())
	if pick == nil {
		pick = func(seq uint64) uint64 { return seq % n }
	}
	nc := uint64(len(conns))
	if decode == decodeLean || s.prepared {
		opts := []grpc.CallOption{grpc.ForceCodecV2(leanCodec{})}
		if s.limits != nil {
			return func(ctx context.Context, seq uint64) (string, error) {
				var a rateLimitAnswer
				err := conns[seq%nc].Invoke(ctx, rlsv3.RateLimitService_ShouldRateLimit_FullMethodName, s.wireLimits[pick(seq)], &a, opts...)
				if err != nil {
					return grpcOutcome(err), err
				}
				return a.outcome(), nil
			}
		}
		return func(ctx context.Context, seq uint64) (string, error) {
			var a checkAnswer
			err := conns[seq%nc].Invoke(ctx, authv3.Authorization_Check_FullMethodName, s.wireChecks[pick(seq)], &a, opts...)
			if err != nil {
				return grpcOutcome(err), err
			}
			return a.outcome(), nil
		}
	}
	if s.limits != nil {
		clients := make([]rlsv3.RateLimitServiceClient, len(conns))
		for i, c := range conns {
			clients[i] = rlsv3.NewRateLimitServiceClient(c)
		}
		return func(ctx context.Context, seq uint64) (string, error) {
			resp, err := clients[seq%nc].ShouldRateLimit(ctx, s.limits[pick(seq)])
			if err != nil {
				return grpcOutcome(err), err
			}
			return fullRateLimitAnswer(resp).outcome(), nil
		}
	}
	clients := make([]authv3.AuthorizationClient, len(conns))
	for i, c := range conns {
		clients[i] = authv3.NewAuthorizationClient(c)
	}
	return func(ctx context.Context, seq uint64) (string, error) {
		resp, err := clients[seq%nc].Check(ctx, s.checks[pick(seq)])
		if err != nil {
			return grpcOutcome(err), err
		}
		return fullCheckAnswer(resp).outcome(), nil
	}
}

// outcome names a CheckResponse by its status code, as Envoy decides (OK
// allows, anything else denies). An http_response member that contradicts
// the code (an OK with a denied_response or error_response, a denial with
// an ok_response) is named too: Envoy would follow the code, but the
// server is not answering what it means.
func (a checkAnswer) outcome() string {
	o := checkOutcome(codes.Code(uint32(a.Code)))
	switch {
	case a.Code == 0 && a.Kind == kindDenied:
		o += "+denied_response"
	case a.Code == 0 && a.Kind == kindError:
		o += "+error_response"
	case a.Code != 0 && a.Kind == kindOK:
		o += "+ok_response"
	}
	return o
}

func (a rateLimitAnswer) outcome() string {
	return rateLimitOutcome(rlsv3.RateLimitResponse_Code(a.Code))
}

// checkOutcome names a CheckResponse's status the way ext-authz names its
// decisions (README: result column).
func checkOutcome(c codes.Code) string {
	switch c {
	case codes.OK:
		return "ok"
	case codes.Unauthenticated:
		return "unauthenticated"
	case codes.PermissionDenied:
		return "forbidden"
	case codes.ResourceExhausted:
		return "rate_limited"
	case codes.Unavailable:
		return "unavailable"
	case codes.InvalidArgument:
		return "bad_request"
	}
	return "status_" + strings.ToLower(c.String())
}

func rateLimitOutcome(c rlsv3.RateLimitResponse_Code) string {
	switch c {
	case rlsv3.RateLimitResponse_OK:
		return "ok"
	case rlsv3.RateLimitResponse_OVER_LIMIT:
		return "over_limit"
	}
	return "unknown"
}

// grpcOutcome names a failed call: the gRPC code, or "canceled" when the
// run ended under it.
func grpcOutcome(err error) string {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "canceled"
	}
	return "grpc_" + strings.ToLower(status.Code(err).String())
}

// readPool reads one token per line, skipping blank lines.
func readPool(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no tokens", path)
	}
	return out, nil
}
