package httpauthz_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/authz/httpauthz"
)

// testPipeline is authztest.GoldenPipeline, the pipeline the golden files
// were written against.
func testPipeline(t testing.TB) *authz.Pipeline {
	t.Helper()
	p, err := authztest.GoldenPipeline()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// answer is what the gateway does with a decision, on either transport:
// the status, the headers set on the upstream request or sent to the
// client, the upstream headers removed, and the body.
type answer struct {
	Status  int
	Headers []string // "name: value", sorted
	Remove  []string
	Body    string
}

const pathPrefix = "/ext-authz"

// grpcOnly are the golden cases an HTTP check cannot express: Envoy's
// http_service always sends a method and a path, so a CheckRequest without
// its HTTP attributes has no HTTP equivalent.
var grpcOnly = map[string]bool{"deny-no-attributes": true, "deny-no-http": true}

// rejectedByHTTPServer are the golden cases Go's HTTP server answers
// itself, before the handler: a Host header that is not ASCII gets "400
// Bad Request: malformed Host header". Envoy passes a 4xx to the client as
// a denial, so the decision (400, denied) is the same; only the body is the
// server's plain text instead of the JSON one.
var rejectedByHTTPServer = map[string]bool{"deny-non-punycode-host": true}

// TestGoldenBothTransports runs every golden CheckRequest of
// authz/extauthz/testdata through the gRPC adapter (over a real socket,
// with the generated client) and, sent the way Envoy's http_service sends
// it, through the HTTP adapter (with a real http.Client), and requires the
// same answer from both.
func TestGoldenBothTransports(t *testing.T) {
	files, _ := filepath.Glob("../extauthz/testdata/*.golden")
	if len(files) < 10 {
		t.Fatalf("found %d golden files", len(files))
	}
	grpcAddr := startGRPC(t)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := authv3.NewAuthorizationClient(conn)
	hs := httptest.NewServer(httpauthz.New(testPipeline(t), httpauthz.Options{PathPrefix: pathPrefix}))
	defer hs.Close()
	hc := hs.Client()

	seenGRPCOnly := 0
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".golden")
		t.Run(name, func(t *testing.T) {
			req := readGolden(t, file)
			gresp, err := client.Check(context.Background(), req)
			if err != nil {
				t.Fatalf("gRPC Check: %v", err)
			}
			want := fromCheckResponse(gresp)
			if req.GetAttributes().GetRequest().GetHttp() == nil {
				if !grpcOnly[name] {
					t.Fatalf("no HTTP attributes, but not listed in grpcOnly")
				}
				seenGRPCOnly++
				return
			}
			if rejectedByHTTPServer[name] {
				// Go's http.Client would turn the host into punycode, which
				// Envoy does not: send the bytes as Envoy does.
				status := sendRaw(t, hs.Listener.Addr().String(), req)
				if status != want.Status {
					t.Errorf("HTTP status %d, gRPC %d", status, want.Status)
				}
				return
			}
			got := sendHTTP(t, hc, hs.URL, req)
			if !equalAnswers(got, want) {
				t.Errorf("transports disagree\nhttp: %+v\ngrpc: %+v", got, want)
			}
		})
	}
	if seenGRPCOnly != len(grpcOnly) {
		t.Errorf("%d of the %d gRPC-only cases were found: grpcOnly is stale", seenGRPCOnly, len(grpcOnly))
	}
}

func startGRPC(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(extauthz.Codec{}))
	authv3.RegisterAuthorizationServer(srv, extauthz.New(testPipeline(t), extauthz.Options{}))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

func readGolden(t *testing.T, file string) *authv3.CheckRequest {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	reqText, _, ok := strings.Cut(string(raw), "\n----------\n")
	if !ok {
		t.Fatalf("%s: no separator", file)
	}
	var lines []string
	for _, l := range strings.Split(reqText, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			lines = append(lines, l)
		}
	}
	req := &authv3.CheckRequest{}
	if err := protojson.Unmarshal([]byte(strings.Join(lines, "\n")), req); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return req
}

func fromCheckResponse(r *authv3.CheckResponse) answer {
	var a answer
	if ok := r.GetOkResponse(); r.GetDeniedResponse() == nil {
		a.Status = 200
		for _, h := range ok.GetHeaders() {
			a.Headers = append(a.Headers, h.GetHeader().GetKey()+": "+h.GetHeader().GetValue())
		}
		for _, h := range ok.GetResponseHeadersToAdd() {
			a.Headers = append(a.Headers, h.GetHeader().GetKey()+": "+h.GetHeader().GetValue())
		}
		a.Remove = ok.GetHeadersToRemove()
	} else {
		d := r.GetDeniedResponse()
		a.Status = int(d.GetStatus().GetCode())
		for _, h := range d.GetHeaders() {
			a.Headers = append(a.Headers, h.GetHeader().GetKey()+": "+h.GetHeader().GetValue())
		}
		a.Body = d.GetBody()
	}
	slices.Sort(a.Headers)
	return a
}

// sendHTTP sends req the way Envoy's http_service does: the original
// method, path_prefix + the original path (with its query), the
// :authority as Host, the other headers as they are (an Istio provider
// lists them in includeRequestHeadersInCheck), and x-forwarded-for with the
// gateway's direct peer appended, as a gateway using the remote address
// appends it before any filter runs.
func sendHTTP(t *testing.T, c *http.Client, base string, req *authv3.CheckRequest) answer {
	t.Helper()
	r := extauthz.RequestFromProto(req)
	target := r.Headers[":path"]
	if p := req.GetAttributes().GetRequest().GetHttp().GetPath(); p != "" {
		target = p
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Opaque = pathPrefix + target
	hreq := &http.Request{Method: r.Method, URL: u, Host: r.Host, Header: http.Header{}}
	for k, v := range r.Headers {
		if strings.HasPrefix(k, ":") || k == "content-length" {
			continue
		}
		hreq.Header[k] = []string{v}
	}
	if peer := r.PeerAddress; peer != "" {
		xff := r.Headers["x-forwarded-for"]
		if last := strings.TrimSpace(xff[strings.LastIndexByte(xff, ',')+1:]); last != peer {
			if xff != "" {
				xff += ","
			}
			hreq.Header["x-forwarded-for"] = []string{xff + peer}
		}
	}
	resp, err := c.Do(hreq)
	if err != nil {
		t.Fatalf("HTTP check: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{Status: resp.StatusCode, Body: string(body)}
	for k, vs := range resp.Header {
		lk := strings.ToLower(k)
		switch lk {
		case "date", "content-length":
			continue // the HTTP server's own; Envoy drops them from an allow
		case httpauthz.HeadersToRemove:
			for _, v := range vs {
				for _, n := range strings.Split(v, ",") {
					a.Remove = append(a.Remove, strings.TrimSpace(n))
				}
			}
			continue
		}
		for _, v := range vs {
			a.Headers = append(a.Headers, lk+": "+v)
		}
	}
	slices.Sort(a.Headers)
	return a
}

func equalAnswers(a, b answer) bool {
	return a.Status == b.Status && a.Body == b.Body && slices.Equal(a.Headers, b.Headers) && slices.Equal(a.Remove, b.Remove)
}

// sendRaw writes the check over TCP, byte for byte as Envoy's HTTP/1
// codec would, and returns the answer's status.
func sendRaw(t *testing.T, addr string, req *authv3.CheckRequest) int {
	t.Helper()
	r := extauthz.RequestFromProto(req)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	var b strings.Builder
	b.WriteString(r.Method + " " + pathPrefix + r.Headers[":path"] + " HTTP/1.1\r\nhost: " + r.Host + "\r\nconnection: close\r\n")
	for k, v := range r.Headers {
		if !strings.HasPrefix(k, ":") {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}
