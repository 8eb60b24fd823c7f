package extauthz_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// rawCodec sends bytes unchanged, so a test can put on the wire what the
// generated client refuses to marshal.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// codecServer serves Check (and health) with the Codec on a loopback
// socket, records every observed decision, and returns a client
// connection. With lean, Check is registered with Register (the lean wire
// path), otherwise the generated way.
func codecServer(t *testing.T, lean bool) (*grpc.ClientConn, *prometheus.Registry, func() authz.Decision) {
	t.Helper()
	reg := prometheus.NewRegistry()
	var (
		mu       sync.Mutex
		observed authz.Decision
	)
	srv := grpc.NewServer(grpc.ForceServerCodecV2(extauthz.Codec{}))
	check := extauthz.New(testPipeline(t), extauthz.Options{
		Metrics: extauthz.NewMetrics(reg),
		Observe: func(_ context.Context, _ *authz.Request, d *authz.Decision, _ time.Duration) {
			mu.Lock()
			observed = *d
			mu.Unlock()
		},
	})
	if lean {
		extauthz.Register(srv, check)
	} else {
		authv3.RegisterAuthorizationServer(srv, check)
	}
	healthgrpc.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); srv.Stop(); <-done })
	return conn, reg, func() authz.Decision {
		mu.Lock()
		defer mu.Unlock()
		return observed
	}
}

// corrupt marshals req and then replaces every marker with same-length
// bytes that are not UTF-8, so lengths on the wire stay right.
func corrupt(t *testing.T, req *authv3.CheckRequest, marker string) []byte {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Repeat([]byte{0xff}, len(marker))
	if !bytes.Contains(b, []byte(marker)) {
		t.Fatalf("marker %q not in the message", marker)
	}
	return bytes.ReplaceAll(b, []byte(marker), bad)
}

// deepList is a Value nested depth lists deep.
func deepList(depth int) *structpb.Value {
	v := structpb.NewStringValue("x")
	for range depth {
		v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
	}
	return v
}

// TestCodecUnreadableRequests: a CheckRequest Go's protobuf cannot decode
// is answered 400 unreadable_request and counted by reason, over a real
// socket; readable requests and other services are untouched.
func TestCodecUnreadableRequests(t *testing.T) {
	for _, lean := range []bool{false, true} {
		t.Run(map[bool]string{false: "generated", true: "lean"}[lean], func(t *testing.T) { testCodecUnreadableRequests(t, lean) })
	}
}

func testCodecUnreadableRequests(t *testing.T, lean bool) {
	conn, reg, lastObserved := codecServer(t, lean)
	base := func() *authv3.CheckRequest {
		return extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: "/api/orders",
			Headers: [][2]string{{"x-api-key", "k-alice"}}, RequestID: "rid-1",
			ContextExtensions: map[string]string{"ctxkeyMARK": "ctxvalMARK"}})
	}
	withHeader := func(k, v string) *authv3.CheckRequest {
		r := base()
		r.Attributes.Request.Http.Headers[k] = v
		return r
	}
	deep := func(depth int) *authv3.CheckRequest {
		r := base()
		s := &structpb.Struct{Fields: map[string]*structpb.Value{"deep": deepList(depth)}}
		r.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"f": s}}
		return r
	}
	tests := []struct {
		name       string
		give       []byte
		wantHTTP   int
		wantReason string
		wantLabel  string // the unreadable reason counted, "" for none
	}{
		{name: "readable request", give: mustMarshal(t, base()), wantHTTP: 200},
		{name: "invalid UTF-8 in a header value", give: corrupt(t, withHeader("x-note", "MARKER"), "MARKER"),
			wantHTTP: 400, wantReason: extauthz.ReasonUnreadable, wantLabel: extauthz.UnreadableInvalidUTF8},
		{name: "invalid UTF-8 in a header name", give: corrupt(t, withHeader("x-MARKER", "v"), "MARKER"),
			wantHTTP: 400, wantReason: extauthz.ReasonUnreadable, wantLabel: extauthz.UnreadableInvalidUTF8},
		{name: "invalid UTF-8 in a context_extensions key", give: corrupt(t, base(), "ctxkeyMARK"),
			wantHTTP: 400, wantReason: extauthz.ReasonUnreadable, wantLabel: extauthz.UnreadableInvalidUTF8},
		{name: "invalid UTF-8 in a context_extensions value", give: corrupt(t, base(), "ctxvalMARK"),
			wantHTTP: 400, wantReason: extauthz.ReasonUnreadable, wantLabel: extauthz.UnreadableInvalidUTF8},
		{name: "lists 4,000 deep (8,000 messages: under the limit)", give: mustMarshal(t, deep(4000)), wantHTTP: 200},
		{name: "lists 6,000 deep (12,000 messages)", give: mustMarshal(t, deep(6000)),
			wantHTTP: 400, wantReason: extauthz.ReasonUnreadable, wantLabel: extauthz.UnreadableTooDeep},
		{name: "truncated message", give: mustMarshal(t, base())[:40],
			wantHTTP: 400, wantReason: extauthz.ReasonUnreadable, wantLabel: extauthz.UnreadableMalformed},
		{name: "forged mark with an unknown reason", give: append(mustMarshal(t, base()), forgedMark("x-attacker-chosen-label")...),
			wantHTTP: 400, wantReason: extauthz.ReasonUnreadable, wantLabel: extauthz.UnreadableMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := unreadableCounts(reg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out []byte
			if err := conn.Invoke(ctx, authv3.Authorization_Check_FullMethodName, &tt.give, &out, grpc.ForceCodecV2(rawCodec{})); err != nil {
				t.Fatalf("Check: %v", err)
			}
			resp := &authv3.CheckResponse{}
			if err := proto.Unmarshal(out, resp); err != nil {
				t.Fatal(err)
			}
			got := 200
			if resp.GetStatus().GetCode() != 0 {
				got = int(resp.GetDeniedResponse().GetStatus().GetCode())
			}
			if got != tt.wantHTTP || (tt.wantReason != "" && resp.GetStatus().GetMessage() != tt.wantReason) {
				t.Fatalf("answered %d %q, want %d %q", got, resp.GetStatus().GetMessage(), tt.wantHTTP, tt.wantReason)
			}
			after := unreadableCounts(reg)
			for _, r := range []string{extauthz.UnreadableInvalidUTF8, extauthz.UnreadableTooDeep, extauthz.UnreadableMalformed} {
				want := before[r]
				if r == tt.wantLabel {
					want++
				}
				if after[r] != want {
					t.Errorf("unreadable_requests_total{reason=%q} = %v, want %v", r, after[r], want)
				}
			}
			if tt.wantLabel != "" {
				last := lastObserved()
				if last.ID == "" || last.Reason != extauthz.ReasonUnreadable {
					t.Errorf("observed decision %+v", last)
				}
				if !strings.Contains(resp.GetDeniedResponse().GetBody(), extauthz.ReasonUnreadable) {
					t.Errorf("body %q", resp.GetDeniedResponse().GetBody())
				}
			}
		})
	}
	// Other services still decode with the plain proto codec.
	hc := healthgrpc.NewHealthClient(conn)
	if _, err := hc.Check(context.Background(), &healthgrpc.HealthCheckRequest{}); err != nil {
		t.Errorf("health Check: %v", err)
	}
	if n := counterValue(t, reg, "ext_authz_decisions_total", authz.BadRequest.String(), extauthz.ReasonUnreadable); n != 7 {
		t.Errorf("decisions_total{reason=unreadable_request} = %v, want 7", n)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forgedMark is a client's own copy of the codec's mark field.
func forgedMark(reason string) []byte {
	b := protowire.AppendTag(nil, 1<<29-1, protowire.BytesType)
	return protowire.AppendString(b, reason)
}

func unreadableCounts(reg *prometheus.Registry) map[string]float64 {
	out := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "ext_authz_unreadable_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, result, reason string) float64 {
	t.Helper()
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["result"] == result && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{result=%q,reason=%q}", name, result, reason)
	return 0
}
