package drain_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ext-authz/ext-authz/internal/drain"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake records its calls; when hold is set, GracefulStop returns only
// after Stop.
type fake struct {
	name    string
	hold    bool
	mu      *sync.Mutex
	events  *[]string
	stopped chan struct{}
}

func (f *fake) record(e string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.events = append(*f.events, f.name+" "+e)
}

func (f *fake) GracefulStop() {
	f.record("graceful")
	if f.hold {
		<-f.stopped
	}
	f.record("graceful returned")
}

func (f *fake) Stop() {
	f.record("stop")
	close(f.stopped)
}

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		give    []bool // hold, per server
		wantCut bool
		want    []string // events, in order, per server (servers run at once)
	}{
		{
			name: "all finish in time",
			give: []bool{false, false},
			want: []string{"graceful", "graceful returned"},
		},
		{
			name:    "one holds: every server is stopped",
			give:    []bool{false, true},
			wantCut: true,
			want:    []string{"graceful", "graceful returned", "stop"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var events []string
			var servers []drain.Server
			for i, hold := range tt.give {
				servers = append(servers, &fake{name: string(rune('a' + i)), hold: hold, mu: &mu, events: &events, stopped: make(chan struct{})})
			}
			timeouts := 0
			cut := drain.Run(drain.Options{Timeout: 50 * time.Millisecond, OnTimeout: func() {
				mu.Lock()
				timeouts++
				events = append(events, "timeout")
				mu.Unlock()
			}}, servers...)
			if cut != tt.wantCut {
				t.Errorf("cut = %v, want %v", cut, tt.wantCut)
			}
			if want := map[bool]int{false: 0, true: 1}[tt.wantCut]; timeouts != want {
				t.Errorf("OnTimeout ran %d times, want %d", timeouts, want)
			}
			for i := range tt.give {
				name := string(rune('a' + i))
				var got []string
				for _, e := range events {
					if e[:1] == name {
						got = append(got, e[2:])
					}
				}
				slices.Sort(got)
				want := slices.Clone(tt.want)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("server %s: events %v, want %v (all: %v)", name, got, want, events)
				}
			}
			if tt.wantCut {
				// The holding server returns only after OnTimeout and Stop.
				ti, si, ri := slices.Index(events, "timeout"), slices.Index(events, "b stop"), slices.Index(events, "b graceful returned")
				if ti < 0 || ti > si || si > ri {
					t.Errorf("order: timeout, stop, graceful returned; got %v", events)
				}
			}
		})
	}
}

func TestRunWaitsDelay(t *testing.T) {
	var mu sync.Mutex
	var events []string
	f := &fake{name: "a", mu: &mu, events: &events, stopped: make(chan struct{})}
	start := time.Now()
	drain.Run(drain.Options{Delay: 30 * time.Millisecond, Timeout: time.Second}, f)
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("Run returned after %v, before its delay", d)
	}
	if len(events) != 2 {
		t.Errorf("events = %v", events)
	}
}

// TestRunGRPC drains a real gRPC server over a real socket: a call in
// flight when the timeout passes is ended, and Serve returns.
func TestRunGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A Watch stream stays open until the server ends it: a call that
	// does not finish by itself.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	hs.Shutdown() // NOT_SERVING, as the caller does before Run

	if cut := drain.Run(drain.Options{Timeout: 100 * time.Millisecond}, srv); !cut {
		t.Errorf("cut = false with a stream open")
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	for {
		if _, err := w.Recv(); err != nil {
			break // the stream ended
		}
	}
}
