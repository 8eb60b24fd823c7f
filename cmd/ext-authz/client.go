package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
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

// checkCommand sends one Check, built as Envoy builds it, and prints the
// decision: a way to see an allow and a deny by hand without grpcurl.
func checkCommand(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", "127.0.0.1:8888", "ext-authz gRPC address")
	method := fs.String("X", "GET", "HTTP method")
	rawURL := fs.String("url", "https://example.com/", "request URL as the client sent it to the gateway")
	timeout := fs.Duration("timeout", 2*time.Second, "Check deadline")
	asJSON := fs.Bool("json", false, "print the whole CheckResponse as JSON")
	var headers headerFlags
	fs.Var(&headers, "H", `request header "Name: value" (repeatable)`)
	if err := fs.Parse(args); err != nil {
		return &usageError{err.Error()}
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Host == "" {
		return &usageError{fmt.Sprintf("--url %q is not an absolute URL", *rawURL)}
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
		return fmt.Errorf("check: %w", err)
	}
	if *asJSON {
		b, _ := protojson.MarshalOptions{Multiline: true}.Marshal(resp)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	printResponse(stdout, resp)
	return nil
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
