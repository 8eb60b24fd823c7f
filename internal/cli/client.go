package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags [][2]string

func (h *headerFlags) String() string { return fmt.Sprint(*h) }

func (h *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q is not \"Name: value\"", v)
	}
	*h = append(*h, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
	return nil
}

const checkUsage = `usage: ext-authz check [--addr A] [--url U] [-X M] [-H 'Name: value']... [--json]
       ext-authz check --config FILE [--explain] [--url U] [-X M] [-H 'Name: value']... [--peer IP] [--context k=v]...
       ext-authz check --explain [--admin ADDR] [--url U] [-X M] [-H 'Name: value']... [--peer IP] [--context k=v]...

Sends one Check, built as the gateway's Envoy builds it, to a running server
and prints the decision. --addr defaults to $EXT_AUTHZ_GRPC_ADDRESS (a bare
":port" means 127.0.0.1:port), else 127.0.0.1:8888.

With --config, decides the same Check under a config file instead, without
a server; --explain then shows every rule tried and why it did or did not
match, the authenticators and their outcomes, the conditions and their
results, and the rate-limit descriptors (asked without counting). No
credential is printed. --explain without --config asks a running server's
admin endpoint (POST /debug/explain, on only with admin.explain: true) to
explain the request against its live policy; --admin defaults to
$EXT_AUTHZ_ADMIN_ADDRESS (":port" means 127.0.0.1:port), else
127.0.0.1:8081 (see docs/conditions.md).

Exit status: 0 allowed; 1 no answer (connection, deadline, gRPC error);
2 usage error; 3 denied 401; 4 denied 403; 5 denied 429; 6 denied with
another status (400, 413, 503, ...).`

// DefaultAddr is the address a client dials: $EXT_AUTHZ_GRPC_ADDRESS
// (the server's override) made dialable, else the default port locally.
func DefaultAddr(getenv func(string) string) string {
	a := getenv(EnvGRPCAddress)
	if a == "" {
		return "127.0.0.1:8888"
	}
	if host, port, err := net.SplitHostPort(a); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return a
}

// call dials addr, makes one RPC under timeout and prints its answer: as
// JSON with asJSON, else with show. name prefixes a transport error.
func call(ctx context.Context, name, addr string, timeout time.Duration, rpc func(context.Context, *grpc.ClientConn) (proto.Message, error), asJSON bool, stdout io.Writer, show func()) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := rpc(ctx, conn)
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, addr, err)
	}
	if !asJSON {
		show()
		return nil
	}
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, string(b))
	return err
}

// denialExit is the exit status for an HTTP status a Check denied with.
func denialExit(httpStatus int32) int {
	switch httpStatus {
	case 401:
		return ExitUnauth
	case 403, 0: // no status: Envoy answers 403
		return ExitForbidden
	case 429:
		return ExitRateLimited
	}
	return ExitDeniedOther
}

// Check sends one Check, built as Envoy builds it, and prints the
// decision: a way to see an allow and a deny by hand without grpcurl.
func Check(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	return CheckLocal(ctx, args, stdout, getenv, nil)
}

// CheckLocal is Check that, given local, also decides under a config file
// (--config) without a server: the command wires local, since building the
// service is not the client's business.
func CheckLocal(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string, local LocalDecider) error {
	fs := NewFlags("check")
	lf := localFlags(fs)
	addr := fs.String("addr", DefaultAddr(getenv), "ext-authz gRPC address")
	method := fs.String("X", "GET", "HTTP method")
	rawURL := fs.String("url", "https://example.com/", "request URL as the client sent it to the gateway")
	timeout := fs.Duration("timeout", 2*time.Second, "Check deadline")
	asJSON := fs.Bool("json", false, "print the whole CheckResponse as JSON")
	var headers headerFlags
	fs.Var(&headers, "H", `request header "Name: value" (repeatable)`)
	if err := ParseFlags(fs, checkUsage, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &UsageError{Msg: fmt.Sprintf("check: unexpected argument %q", fs.Arg(0)), Help: Hint(fs.Name())}
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Host == "" {
		return &UsageError{Msg: fmt.Sprintf("--url %q is not an absolute URL", *rawURL), Help: Hint(fs.Name())}
	}
	req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{
		Method: strings.ToUpper(*method), Scheme: u.Scheme, Host: u.Host, Path: u.RequestURI(),
		Headers: headers, RequestID: fmt.Sprintf("check-%d", time.Now().UnixNano()),
		PeerAddress: lf.peer, ContextExtensions: lf.context,
	})
	if lf.admin == "" {
		lf.admin = DefaultAdminAddr(getenv)
	}
	if lf.config != "" || lf.explain {
		return lf.run(ctx, fs.Name(), req, *timeout, local, *asJSON, stdout)
	}
	var resp *authv3.CheckResponse
	err = call(ctx, "check", *addr, *timeout, func(ctx context.Context, conn *grpc.ClientConn) (proto.Message, error) {
		var err error
		resp, err = authv3.NewAuthorizationClient(conn).Check(ctx, req)
		return resp, err
	}, *asJSON, stdout, func() { printResponse(stdout, resp) })
	if err != nil {
		return err
	}
	if resp.GetStatus().GetCode() == 0 {
		return nil
	}
	return &ExitError{Code: denialExit(int32(resp.GetDeniedResponse().GetStatus().GetCode()))}
}

func printResponse(w io.Writer, resp *authv3.CheckResponse) {
	md := resp.GetDynamicMetadata().GetFields()
	str := func(k string) string { return md[k].GetStringValue() }
	if ok := resp.GetOkResponse(); resp.GetStatus().GetCode() == 0 {
		fmt.Fprintf(w, "ALLOW rule=%s subject=%s decision=%s\n", str("rule"), str("subject"), str("decision_id"))
		for _, h := range ok.GetHeaders() {
			fmt.Fprintf(w, "  set upstream header  %s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		for _, h := range ok.GetHeadersToRemove() {
			fmt.Fprintf(w, "  remove header        %s\n", h)
		}
		for _, h := range ok.GetResponseHeadersToAdd() {
			fmt.Fprintf(w, "  add response header  %s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		return
	}
	d := resp.GetDeniedResponse()
	fmt.Fprintf(w, "DENY %d rule=%s reason=%s decision=%s\n", d.GetStatus().GetCode(), str("rule"), str("reason"), str("decision_id"))
	for _, h := range d.GetHeaders() {
		fmt.Fprintf(w, "  %s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	fmt.Fprintf(w, "  body: %s\n", d.GetBody())
}

const rateLimitUsage = `usage: ext-authz ratelimit --domain D --descriptor 'key=value[,key=value]...'... [--hits N] [--addr A] [--json]

Sends one ShouldRateLimit (envoy.service.ratelimit.v3, what Envoy's
ratelimit filter sends) to a running server and prints the answer, one line
per descriptor. Each --descriptor is one descriptor, its entries in order;
an entry without "=value" has an empty value. --addr defaults as for check.

Exit status: 0 OK; 1 no answer (connection, deadline, gRPC error, or an
UNKNOWN overall code); 2 usage error; 5 OVER_LIMIT.`

// descriptorFlags collects repeated --descriptor flags.
type descriptorFlags []*ratelimitv3.RateLimitDescriptor

func (d *descriptorFlags) String() string { return fmt.Sprint(len(*d)) }

func (d *descriptorFlags) Set(v string) error {
	desc := &ratelimitv3.RateLimitDescriptor{}
	for e := range strings.SplitSeq(v, ",") {
		key, value, _ := strings.Cut(e, "=")
		if key == "" {
			return fmt.Errorf("%q: every entry needs a key (key=value,key=value)", v)
		}
		desc.Entries = append(desc.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: key, Value: value})
	}
	*d = append(*d, desc)
	return nil
}

// RateLimit sends one ShouldRateLimit, the RLS client.
func RateLimit(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := NewFlags("ratelimit")
	addr := fs.String("addr", DefaultAddr(getenv), "ext-authz gRPC address")
	domain := fs.String("domain", "", "rate-limit domain (required)")
	hits := fs.Uint("hits", 1, "hits_addend: how many requests this call counts")
	timeout := fs.Duration("timeout", 2*time.Second, "call deadline")
	asJSON := fs.Bool("json", false, "print the whole RateLimitResponse as JSON")
	var descs descriptorFlags
	fs.Var(&descs, "descriptor", "descriptor 'key=value[,key=value]' (repeatable, at least one)")
	if err := ParseFlags(fs, rateLimitUsage, args, stdout); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return &UsageError{Msg: fmt.Sprintf("ratelimit: unexpected argument %q", fs.Arg(0)), Help: Hint(fs.Name())}
	case *domain == "":
		return &UsageError{Msg: "ratelimit: --domain is required", Help: Hint(fs.Name())}
	case len(descs) == 0:
		return &UsageError{Msg: "ratelimit: at least one --descriptor is required", Help: Hint(fs.Name())}
	case *hits > math.MaxUint32:
		return &UsageError{Msg: "ratelimit: --hits is too large", Help: Hint(fs.Name())}
	}
	var resp *rlsv3.RateLimitResponse
	err := call(ctx, "ratelimit", *addr, *timeout, func(ctx context.Context, conn *grpc.ClientConn) (proto.Message, error) {
		var err error
		resp, err = rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
			Domain: *domain, Descriptors: descs, HitsAddend: uint32(*hits),
		})
		return resp, err
	}, *asJSON, stdout, func() { printRateLimit(stdout, descs, resp) })
	if err != nil {
		return err
	}
	switch resp.GetOverallCode() {
	case rlsv3.RateLimitResponse_OK:
		return nil
	case rlsv3.RateLimitResponse_OVER_LIMIT:
		return &ExitError{Code: ExitRateLimited}
	}
	return &ExitError{Code: ExitFailure, Msg: "ratelimit: the server answered overall code " + resp.GetOverallCode().String()}
}

func printRateLimit(w io.Writer, descs descriptorFlags, resp *rlsv3.RateLimitResponse) {
	fmt.Fprintln(w, resp.GetOverallCode())
	for i, st := range resp.GetStatuses() {
		var entries []string
		if i < len(descs) {
			for _, e := range descs[i].GetEntries() {
				entries = append(entries, e.GetKey()+"="+e.GetValue())
			}
		}
		line := fmt.Sprintf("  [%s] %s", strings.Join(entries, ","), st.GetCode())
		if l := st.GetCurrentLimit(); l != nil {
			line += fmt.Sprintf(" limit=%d/%s remaining=%d", l.GetRequestsPerUnit(), strings.ToLower(l.GetUnit().String()), st.GetLimitRemaining())
			if d := st.GetDurationUntilReset(); d != nil {
				line += " reset=" + d.AsDuration().String()
			}
		}
		fmt.Fprintln(w, line)
	}
	for _, h := range resp.GetResponseHeadersToAdd() {
		fmt.Fprintf(w, "  add response header  %s: %s\n", h.GetKey(), h.GetValue())
	}
}
