package grpcedge_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
)

// TestMain fails the run when a goroutine outlives the tests: every
// server, client and reader must have been stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2(grpcproto.Name) }

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }

// gaugeOrCounter returns the registered collector with name, to read it
// with testutil.ToFloat64.
func gaugeOrCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "copy"})
		switch {
		case m.GetCounter() != nil:
			g.Set(m.GetCounter().GetValue())
		case m.GetGauge() != nil:
			g.Set(m.GetGauge().GetValue())
		}
		return g
	}
	t.Fatalf("no series %s", name)
	return nil
}
