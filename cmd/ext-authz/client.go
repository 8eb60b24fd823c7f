package main

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

Sends one Check, built as the gateway's Envoy builds it, to a running server
and prints the decision. --addr defaults to $EXT_AUTHZ_GRPC_ADDRESS (a bare
":port" means 127.0.0.1:port), else 127.0.0.1:8888.

Exit status: 0 allowed; 1 no answer (connection, deadline, gRPC error);
2 usage error; 3 denied 401; 4 denied 403; 5 denied 429; 6 denied with
another status (400, 413, 503, ...).`

// defaultAddr is the address a client dials: $EXT_AUTHZ_GRPC_ADDRESS
// (the server's override) made dialable, else the default port locally.
func defaultAddr(getenv func(string) string) string {
	a := getenv(envGRPCAddress)
	if a == "" {
		return "127.0.0.1:8888"
	}
	if host, port, err := net.SplitHostPort(a); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return a
}

// denialExit is the exit status for an HTTP status a Check denied with.
func denialExit(httpStatus int32) int {
	switch httpStatus {
	case 401:
		return exitUnauth
	case 403, 0: // no status: Envoy answers 403
		return exitForbidden
	case 429:
		return exitRateLimited
	}
	return exitDeniedOther
}

// checkCommand sends one Check, built as Envoy builds it, and prints the
// decision: a way to see an allow and a deny by hand without grpcurl.
func checkCommand(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := newFlags("check")
	addr := fs.String("addr", defaultAddr(getenv), "ext-authz gRPC address")
	method := fs.String("X", "GET", "HTTP method")
	rawURL := fs.String("url", "https://example.com/", "request URL as the client sent it to the gateway")
	timeout := fs.Duration("timeout", 2*time.Second, "Check deadline")
	asJSON := fs.Bool("json", false, "print the whole CheckResponse as JSON")
	var headers headerFlags
	fs.Var(&headers, "H", `request header "Name: value" (repeatable)`)
	if err := parseFlags(fs, checkUsage, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("check: unexpected argument %q", fs.Arg(0)), help: hint(fs.Name())}
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Host == "" {
		return &usageError{msg: fmt.Sprintf("--url %q is not an absolute URL", *rawURL), help: hint(fs.Name())}
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{
		Method: strings.ToUpper(*method), Scheme: u.Scheme, Host: u.Host, Path: u.RequestURI(),
		Headers: headers, RequestID: fmt.Sprintf("check-%d", time.Now().UnixNano()),
	})
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		return fmt.Errorf("check %s: %w", *addr, err)
	}
	if *asJSON {
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(resp)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
	} else {
		printResponse(stdout, resp)
	}
	if resp.GetStatus().GetCode() == 0 {
		return nil
	}
	return &exitError{code: denialExit(int32(resp.GetDeniedResponse().GetStatus().GetCode()))}
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

// rateLimitCommand sends one ShouldRateLimit, the RLS client.
func rateLimitCommand(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := newFlags("ratelimit")
	addr := fs.String("addr", defaultAddr(getenv), "ext-authz gRPC address")
	domain := fs.String("domain", "", "rate-limit domain (required)")
	hits := fs.Uint("hits", 1, "hits_addend: how many requests this call counts")
	timeout := fs.Duration("timeout", 2*time.Second, "call deadline")
	asJSON := fs.Bool("json", false, "print the whole RateLimitResponse as JSON")
	var descs descriptorFlags
	fs.Var(&descs, "descriptor", "descriptor 'key=value[,key=value]' (repeatable, at least one)")
	if err := parseFlags(fs, rateLimitUsage, args, stdout); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return &usageError{msg: fmt.Sprintf("ratelimit: unexpected argument %q", fs.Arg(0)), help: hint(fs.Name())}
	case *domain == "":
		return &usageError{msg: "ratelimit: --domain is required", help: hint(fs.Name())}
	case len(descs) == 0:
		return &usageError{msg: "ratelimit: at least one --descriptor is required", help: hint(fs.Name())}
	case *hits > math.MaxUint32:
		return &usageError{msg: "ratelimit: --hits is too large", help: hint(fs.Name())}
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain: *domain, Descriptors: descs, HitsAddend: uint32(*hits),
	})
	if err != nil {
		return fmt.Errorf("ratelimit %s: %w", *addr, err)
	}
	if *asJSON {
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(resp)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
	} else {
		printRateLimit(stdout, descs, resp)
	}
	switch resp.GetOverallCode() {
	case rlsv3.RateLimitResponse_OK:
		return nil
	case rlsv3.RateLimitResponse_OVER_LIMIT:
		return &exitError{code: exitRateLimited}
	}
	return &exitError{code: exitFailure, msg: "ratelimit: the server answered overall code " + resp.GetOverallCode().String()}
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
