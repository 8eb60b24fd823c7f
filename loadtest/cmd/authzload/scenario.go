package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

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

// call returns the load.Call sending this scenario over conns, request
// seq on connection seq%len(conns).
func (s *scenario) call(conns []*grpc.ClientConn) load.Call {
	if s.limits != nil {
		clients := make([]rlsv3.RateLimitServiceClient, len(conns))
		for i, c := range conns {
			clients[i] = rlsv3.NewRateLimitServiceClient(c)
		}
		return func(ctx context.Context, seq uint64) (string, error) {
			resp, err := clients[seq%uint64(len(clients))].ShouldRateLimit(ctx, s.limits[seq%uint64(len(s.limits))])
			if err != nil {
				return grpcOutcome(err), err
			}
			return rateLimitOutcome(resp.GetOverallCode()), nil
		}
	}
	clients := make([]authv3.AuthorizationClient, len(conns))
	for i, c := range conns {
		clients[i] = authv3.NewAuthorizationClient(c)
	}
	return func(ctx context.Context, seq uint64) (string, error) {
		resp, err := clients[seq%uint64(len(clients))].Check(ctx, s.checks[seq%uint64(len(s.checks))])
		if err != nil {
			return grpcOutcome(err), err
		}
		return checkOutcome(codes.Code(resp.GetStatus().GetCode())), nil
	}
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
