package grpcedge_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"

	"github.com/ext-authz/ext-authz/internal/grpcedge"
	"github.com/ext-authz/ext-authz/internal/grpcedge/edgetest"
)

const (
	healthCheck = "/grpc.health.v1.Health/Check"
	// bigMethod answers with bigReply bytes, for the non-reading client.
	bigMethod = "/edge.test/Big"
	bigReply  = 256 << 10
)

// rawCodec passes bytes through: the test server's Big method needs no
// proto.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "raw" }

type edgeServer struct {
	addr string
	lis  *grpcedge.Listener
	reg  *prometheus.Registry
}

// serve runs a gRPC server (health, and Big for any unknown method)
// behind a grpcedge.Listener on a loopback port until the test ends.
func serve(t *testing.T, opts grpcedge.Options, extra ...grpc.ServerOption) *edgeServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Metrics = grpcedge.NewMetrics(reg)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := grpcedge.NewListener(raw, opts)
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxConcurrentStreams(1000), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		var in []byte
		if err := ss.RecvMsg(&in); err != nil {
			return err
		}
		out := make([]byte, bigReply)
		return ss.SendMsg(&out)
	}), grpc.ForceServerCodecV2(rawCodecOrProto{})}, extra...)...)
	healthgrpc.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return &edgeServer{addr: raw.Addr().String(), lis: lis, reg: reg}
}

// rawCodecOrProto is the proto codec for health and raw bytes for Big.
type rawCodecOrProto struct{}

func (rawCodecOrProto) Marshal(v any) (mem.BufferSlice, error) {
	if _, ok := v.(*[]byte); ok {
		return rawCodec{}.Marshal(v)
	}
	return protoCodec().Marshal(v)
}

func (rawCodecOrProto) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*[]byte); ok {
		return rawCodec{}.Unmarshal(data, v)
	}
	return protoCodec().Unmarshal(data, v)
}

func (rawCodecOrProto) Name() string { return "proto" }

func (s *edgeServer) closed(reason string) float64 {
	return counterWith(s.reg, "ext_authz_grpc_connections_closed_total", "reason", reason)
}

func (s *edgeServer) resets(early string) float64 {
	return counterWith(s.reg, "ext_authz_grpc_stream_resets_total", "early", early)
}

func counterWith(reg *prometheus.Registry, name, label, value string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// TestRapidResetClosesConnection: HEADERS then RST_STREAM, back to back,
// as fast as the client can: the connection gets GOAWAY
// (ENHANCE_YOUR_CALM) naming the stream of the (budget+1)th early reset,
// and, as it goes on regardless, is closed at the (2×budget+1)th.
func TestRapidResetClosesConnection(t *testing.T) {
	for _, budget := range []int{1, 50, 200} {
		s := serve(t, grpcedge.Options{ResetBudget: budget})
		c := edgetest.Dial(t, s.addr)
		c.StartReader()
		sent := 0
		for range 5000 {
			id, err := c.Headers(healthCheck, false)
			if err == nil {
				err = c.Reset(id)
			}
			if err != nil {
				break
			}
			sent++
			if _, closed, _ := c.State(); closed {
				break
			}
		}
		if !edgetest.WaitFor(5*time.Second, func() bool { _, closed, _ := c.State(); return closed }) {
			t.Fatalf("budget %d: connection still open after %d resets", budget, sent)
		}
		ga, _, _ := c.State()
		if ga == nil || ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
			t.Errorf("budget %d: GOAWAY = %+v, want ENHANCE_YOUR_CALM", budget, ga)
		} else if want := uint32(2*(budget+1) - 1); ga.LastStreamID != want {
			t.Errorf("budget %d: GOAWAY last stream %d, want %d", budget, ga.LastStreamID, want)
		}
		if got := s.resets("true"); got != float64(2*budget+1) {
			t.Errorf("budget %d: early resets counted %v, want %d", budget, got, 2*budget+1)
		}
		if got := counterWith(s.reg, "ext_authz_grpc_reset_goaways_total", "", ""); got != 1 {
			t.Errorf("budget %d: reset_goaways_total = %v, want 1", budget, got)
		}
		if got := s.closed(grpcedge.CloseStreamResets); got != 1 {
			t.Errorf("budget %d: closed{stream_resets} = %v, want 1", budget, got)
		}
		if !edgetest.WaitFor(5*time.Second, func() bool { return s.lis.Open() == 0 }) {
			t.Errorf("budget %d: %d connections still counted open", budget, s.lis.Open())
		}
		t.Logf("budget %d: client sent %d HEADERS+RST pairs before it saw the close", budget, sent)
	}
}

// TestAbuseCooldown: after a connection is closed for ignoring its
// GOAWAY, its address's new connections are refused for AbuseCooldown,
// then accepted again.
func TestAbuseCooldown(t *testing.T) {
	const cooldown = 300 * time.Millisecond
	s := serve(t, grpcedge.Options{ResetBudget: 5, AbuseCooldown: cooldown})
	c := edgetest.Dial(t, s.addr)
	c.StartReader()
	for range 100 {
		id, err := c.Headers(healthCheck, false)
		if err == nil {
			err = c.Reset(id)
		}
		if err != nil {
			break
		}
	}
	if !edgetest.WaitFor(5*time.Second, func() bool { return s.closed(grpcedge.CloseStreamResets) == 1 }) {
		t.Fatal("the abuser was not closed")
	}
	closedAt := time.Now()
	again, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if !edgetest.ClosedByServer(again, 2*time.Second) {
		t.Error("a new connection in the cooldown was accepted")
	}
	if got := counterWith(s.reg, "ext_authz_grpc_connections_refused_total", "reason", grpcedge.RefusedCooldown); got != 1 {
		t.Errorf("refused{cooldown} = %v, want 1", got)
	}
	time.Sleep(cooldown - time.Since(closedAt) + 50*time.Millisecond)
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecureCreds()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthgrpc.NewHealthClient(cc).Check(ctx, &healthgrpc.HealthCheckRequest{}); err != nil {
		t.Errorf("after the cooldown: %v", err)
	}
}

// TestGoAwayLetsCallsInFlightFinish: a client over its budget that
// honours the GOAWAY (as Envoy does; its resets may be its own clients'
// rapid resets passed on) loses no call: the one in flight is answered,
// and the server does not close the connection.
func TestGoAwayLetsCallsInFlightFinish(t *testing.T) {
	const budget = 10
	s := serve(t, grpcedge.Options{ResetBudget: budget})
	c := edgetest.Dial(t, s.addr)
	c.StartReader()
	inFlight, err := c.Headers(healthCheck, false) // its message comes later
	if err != nil {
		t.Fatal(err)
	}
	for range budget + 1 {
		id, err := c.Headers(healthCheck, false)
		if err == nil {
			err = c.Reset(id)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !edgetest.WaitFor(5*time.Second, func() bool { ga, _, _ := c.State(); return ga != nil }) {
		t.Fatal("no GOAWAY")
	}
	if ga, _, _ := c.State(); ga.ErrCode != http2.ErrCodeEnhanceYourCalm || ga.LastStreamID != inFlight+2*(budget+1) {
		t.Errorf("GOAWAY %+v, want ENHANCE_YOUR_CALM, last stream %d", ga, inFlight+2*(budget+1))
	}
	if err := c.Message(inFlight, nil); err != nil { // an empty HealthCheckRequest
		t.Fatal(err)
	}
	if !edgetest.WaitFor(5*time.Second, func() bool { return c.Ended() == 1 }) {
		t.Fatalf("the call in flight was not answered (%d streams ended)", c.Ended())
	}
	time.Sleep(100 * time.Millisecond)
	if _, closed, _ := c.State(); closed {
		t.Error("the server closed the connection of a client that honoured the GOAWAY")
	}
	if got := s.closed(grpcedge.CloseStreamResets); got != 0 {
		t.Errorf("closed{stream_resets} = %v", got)
	}
}

// TestGoAwayThenInFlightResetsKeepConnection: a client over its budget
// that honours the GOAWAY and then cancels the calls it had in flight
// before it (Envoy's timeouts firing on an overloaded server, whose
// reader sees each HEADERS and RST_STREAM together and judges the resets
// early) is not closed, nor is its address cooled down: only resets of
// streams opened after the GOAWAY count as going on with the attack.
func TestGoAwayThenInFlightResetsKeepConnection(t *testing.T) {
	const budget = 10
	s := serve(t, grpcedge.Options{ResetBudget: budget, AbuseCooldown: time.Minute})
	c := edgetest.Dial(t, s.addr)
	c.StartReader()
	var inFlight []uint32
	for range budget {
		id, err := c.Headers(healthCheck, false)
		if err != nil {
			t.Fatal(err)
		}
		inFlight = append(inFlight, id)
	}
	for range budget + 1 {
		id, err := c.Headers(healthCheck, false)
		if err == nil {
			err = c.Reset(id)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !edgetest.WaitFor(5*time.Second, func() bool { ga, _, _ := c.State(); return ga != nil }) {
		t.Fatal("no GOAWAY")
	}
	for _, id := range inFlight { // every call in flight times out at once
		if err := c.Reset(id); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if _, closed, _ := c.State(); closed {
		t.Error("the server closed a client that honoured the GOAWAY and cancelled its calls in flight")
	}
	if got := s.closed(grpcedge.CloseStreamResets); got != 0 {
		t.Errorf("closed{stream_resets} = %v", got)
	}
	c2 := edgetest.Dial(t, s.addr) // its reconnect is not refused
	c2.StartReader()
	if _, err := c2.Headers(healthCheck, true); err != nil {
		t.Fatal(err)
	}
	if !edgetest.WaitFor(5*time.Second, func() bool { return c2.Ended() == 1 }) {
		t.Fatal("the client's new connection was not served")
	}
}

// TestGoAwayNeverRaisesLastStream: after the edge's GOAWAY, grpc-go's own
// (max_connection_age here; GracefulStop alike) must not name a higher
// last stream: RFC 9113 6.8 forbids it, and Envoy's and grpc-go's clients
// treat it as a connection error, failing the calls in flight.
func TestGoAwayNeverRaisesLastStream(t *testing.T) {
	const budget = 10
	s := serve(t, grpcedge.Options{ResetBudget: budget},
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 300 * time.Millisecond, MaxConnectionAgeGrace: 5 * time.Second}))
	c := edgetest.Dial(t, s.addr)
	c.StartReader()
	if _, err := c.Headers(healthCheck, false); err != nil { // in flight through both GOAWAYs
		t.Fatal(err)
	}
	for range budget + 1 {
		id, err := c.Headers(healthCheck, false)
		if err == nil {
			err = c.Reset(id)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !edgetest.WaitFor(5*time.Second, func() bool { return len(c.GoAways()) >= 2 }) {
		t.Fatalf("GOAWAYs %v, want the edge's and grpc-go's", c.GoAways())
	}
	time.Sleep(200 * time.Millisecond)
	gas := c.GoAways()
	for i := 1; i < len(gas); i++ {
		if gas[i] > gas[i-1] {
			t.Errorf("GOAWAY last stream ids %v: %d raised to %d", gas, gas[i-1], gas[i])
		}
	}
}

// TestLegitimateResetsKeepTheConnection: what Envoy does is not abuse.
// Resets of streams older than the window (Envoy's ext_authz timeout
// firing) never count, however many; early resets count only while they
// are more than half of the streams.
func TestLegitimateResetsKeepTheConnection(t *testing.T) {
	const budget = 20
	tests := []struct {
		name      string
		run       func(c *edgetest.Client) error
		wantEarly float64
		wantLate  float64
	}{
		{name: "300 streams reset after the window", run: func(c *edgetest.Client) error {
			ids := make([]uint32, 300)
			for i := range ids {
				id, err := c.Headers(healthCheck, false) // no message: the handler waits
				if err != nil {
					return err
				}
				ids[i] = id
			}
			time.Sleep(60 * time.Millisecond)
			for _, id := range ids {
				if err := c.Reset(id); err != nil {
					return err
				}
			}
			return nil
		}, wantEarly: 0, wantLate: 300},
		{name: "one early reset per three streams", run: func(c *edgetest.Client) error {
			for i := range 300 {
				if i%3 == 0 {
					id, err := c.Headers(healthCheck, false)
					if err == nil {
						err = c.Reset(id)
					}
					if err != nil {
						return err
					}
					continue
				}
				if _, err := c.Request(healthCheck); err != nil {
					return err
				}
			}
			return nil
		}, wantEarly: 100, wantLate: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, grpcedge.Options{ResetBudget: budget, EarlyResetWindow: 20 * time.Millisecond})
			c := edgetest.Dial(t, s.addr)
			c.StartReader()
			if err := tt.run(c); err != nil {
				t.Fatal(err)
			}
			// The connection still answers.
			if err := c.Ping(); err != nil {
				t.Fatal(err)
			}
			if !edgetest.WaitFor(5*time.Second, func() bool { _, _, acks := c.State(); return acks > 0 }) {
				t.Fatal("no PING ack")
			}
			if ga, closed, _ := c.State(); ga != nil || closed {
				t.Errorf("connection ended: GOAWAY %+v, closed %v", ga, closed)
			}
			if !edgetest.WaitFor(2*time.Second, func() bool { return s.resets("true") == tt.wantEarly && s.resets("false") == tt.wantLate }) {
				t.Errorf("resets early=%v late=%v, want %v and %v", s.resets("true"), s.resets("false"), tt.wantEarly, tt.wantLate)
			}
			if got := s.closed(grpcedge.CloseStreamResets); got != 0 {
				t.Errorf("closed{stream_resets} = %v", got)
			}
		})
	}
}

// TestConnectionCap: beyond MaxConnections a connection is closed at once
// and counted; a freed place is taken again.
func TestConnectionCap(t *testing.T) {
	const limit = 4
	s := serve(t, grpcedge.Options{MaxConnections: limit})
	var held []net.Conn
	for range limit {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		defer c.Close()
	}
	if !edgetest.WaitFor(5*time.Second, func() bool { return s.lis.Open() == limit }) {
		t.Fatalf("%d open, want %d", s.lis.Open(), limit)
	}
	over, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if !edgetest.ClosedByServer(over, 5*time.Second) {
		t.Error("the connection over the cap was not closed")
	}
	if got := counterWith(s.reg, "ext_authz_grpc_connections_refused_total", "reason", grpcedge.RefusedLimit); got != 1 {
		t.Errorf("refused_total = %v, want 1", got)
	}
	if got := counterWith(s.reg, "ext_authz_grpc_connections_open", "", ""); got != limit {
		t.Errorf("connections_open = %v, want %d", got, limit)
	}
	// The held ones are open.
	if edgetest.ClosedByServer(held[0], 100*time.Millisecond) {
		t.Error("a connection under the cap was closed")
	}
	_ = held[1].Close()
	if !edgetest.WaitFor(5*time.Second, func() bool { return s.lis.Open() == limit-1 }) {
		t.Fatalf("%d open after one closed", s.lis.Open())
	}
	// A real client gets the freed place and is served.
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecureCreds()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthgrpc.NewHealthClient(cc).Check(ctx, &healthgrpc.HealthCheckRequest{}); err != nil {
		t.Errorf("health Check in the freed place: %v", err)
	}
}

// TestNonReadingClientIsClosed: a client that opens a huge flow-control
// window and never reads makes the server's writes block; WriteTimeout
// closes the connection and frees what it held.
func TestNonReadingClientIsClosed(t *testing.T) {
	s := serve(t, grpcedge.Options{WriteTimeout: 200 * time.Millisecond})
	c := edgetest.Dial(t, s.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	if err := c.WindowUpdate(1<<31 - 1 - 65535); err != nil {
		t.Fatal(err)
	}
	// 64 × 256 KiB = 16 MiB of responses: more than the socket buffers
	// of both ends hold.
	for range 64 {
		if _, err := c.Request(bigMethod); err != nil {
			break // the server may close before all are sent
		}
	}
	began := time.Now()
	if !edgetest.WaitFor(10*time.Second, func() bool { return s.closed(grpcedge.CloseWriteTimeout) == 1 }) {
		t.Fatalf("closed{write_timeout} = %v, want 1", s.closed(grpcedge.CloseWriteTimeout))
	}
	if !edgetest.WaitFor(5*time.Second, func() bool { return s.lis.Open() == 0 }) {
		t.Errorf("%d connections still open", s.lis.Open())
	}
	t.Logf("closed %v after the last request", time.Since(began).Round(time.Millisecond))
}

// TestWithheldWindowIsClosed: a client that reads (so its socket never
// blocks the server) but grants no flow-control window makes grpc-go keep
// every answer in memory; such a connection is closed.
func TestWithheldWindowIsClosed(t *testing.T) {
	const wt = 300 * time.Millisecond
	tests := []struct {
		name     string
		settings []http2.Setting
		// wantBefore bounds when the close comes.
		wantBefore time.Duration
	}{
		{name: "stream window 0", settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 0}}, wantBefore: wt / 2},
		{name: "stream window 1 KiB", settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1024}}, wantBefore: wt / 2},
		{name: "default windows, never a WINDOW_UPDATE", wantBefore: wt + 5*time.Second},
		// The same window 0 at the end of a long SETTINGS frame (unknown
		// ids, which a peer must ignore): the scanner once read only
		// SETTINGS of up to 64 entries, so this one withheld the window
		// unseen and grpc-go kept every answer until max_connection_age.
		{name: "stream window 0 after 64 unknown settings", settings: append(unknownSettings(64),
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}), wantBefore: wt / 2},
		{name: "stream window 0 after 1000 unknown settings", settings: append(unknownSettings(1000),
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}), wantBefore: wt / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, grpcedge.Options{WriteTimeout: wt})
			c := edgetest.Dial(t, s.addr, tt.settings...)
			c.StartReader()
			began := time.Now()
			for range 4 { // 1 MiB of answers; the connection window is 64 KiB
				if _, err := c.Request(bigMethod); err != nil {
					break
				}
			}
			if !edgetest.WaitFor(tt.wantBefore+time.Second, func() bool { _, closed, _ := c.State(); return closed }) {
				t.Fatal("still open")
			}
			if got := s.closed(grpcedge.CloseFlowControl); got != 1 {
				t.Errorf("closed{flow_control} = %v, want 1", got)
			}
			t.Logf("closed after %v", time.Since(began).Round(time.Millisecond))
		})
	}
}

// unknownSettings are n settings with ids HTTP/2 does not define, which a
// peer must ignore (RFC 9113 6.5.2).
func unknownSettings(n int) []http2.Setting {
	out := make([]http2.Setting, n)
	for i := range out {
		out[i] = http2.Setting{ID: http2.SettingID(0x100 + i), Val: 1}
	}
	return out
}

// TestReadingClientIsNotTimedOut: the same responses to a client that
// reads arrive whole, however long the test takes, since each write only
// has to make progress within WriteTimeout.
func TestReadingClientIsNotTimedOut(t *testing.T) {
	s := serve(t, grpcedge.Options{WriteTimeout: 200 * time.Millisecond})
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecureCreds()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for range 16 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		in, out := []byte{}, []byte(nil)
		err := cc.Invoke(ctx, bigMethod, &in, &out, grpc.ForceCodecV2(rawCodec{}))
		cancel()
		if err != nil || len(out) != bigReply {
			t.Fatalf("Big: %d bytes, %v", len(out), err)
		}
	}
	for _, r := range []string{grpcedge.CloseWriteTimeout, grpcedge.CloseFlowControl} {
		if got := s.closed(r); got != 0 {
			t.Errorf("closed{%s} = %v", r, got)
		}
	}
}

// TestCallDeadline: a call of a bounded method that arrives without a
// deadline and never sends its request is ended by the server at the
// bound; other methods are left alone.
func TestCallDeadline(t *testing.T) {
	const bound = 200 * time.Millisecond
	s := serve(t, grpcedge.Options{}, grpc.InTapHandle(grpcedge.CallDeadline([]string{healthCheck}, bound)))
	c := edgetest.Dial(t, s.addr)
	c.StartReader()
	began := time.Now()
	if _, err := c.Headers(healthCheck, false); err != nil { // its request never comes
		t.Fatal(err)
	}
	if _, err := c.Headers(bigMethod, false); err != nil { // not bounded
		t.Fatal(err)
	}
	if !edgetest.WaitFor(5*time.Second, func() bool { return c.Ended() >= 1 }) {
		t.Fatal("the bounded call was not ended")
	}
	if took := time.Since(began); took < bound {
		t.Errorf("ended after %v, before its bound %v", took, bound)
	}
	time.Sleep(2 * bound)
	if got := c.Ended(); got != 1 {
		t.Errorf("%d calls ended, want only the bounded one", got)
	}
	// A call with its own deadline keeps it: a real client's Check with
	// a longer deadline is answered normally.
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecureCreds()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthgrpc.NewHealthClient(cc).Check(ctx, &healthgrpc.HealthCheckRequest{}); err != nil {
		t.Errorf("health Check: %v", err)
	}
}
