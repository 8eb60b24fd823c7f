package redisconf

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/redistest"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		give Config
		want string // substring of the error; "" for valid
	}{
		{"empty is no redis", Config{}, ""},
		{"standalone", Config{Addrs: []string{"127.0.0.1:6379"}}, ""},
		{"mode without addrs", Config{Mode: Cluster}, "addrs: required"},
		{"standalone two addrs", Config{Addrs: []string{"a:1", "b:2"}}, "exactly one address"},
		{"bad addr", Config{Addrs: []string{"localhost"}}, `addrs[0]: "localhost" is not host:port`},
		{"unknown mode", Config{Mode: "ring", Addrs: []string{"a:1"}}, `mode: "ring"`},
		{"sentinel needs master", Config{Mode: Sentinel, Addrs: []string{"a:1"}}, "master_name: required"},
		{"cluster db", Config{Mode: Cluster, Addrs: []string{"a:1"}, DB: 2}, "db: Redis Cluster"},
		{"cert without key", Config{Addrs: []string{"a:1"}, TLS: TLS{Enabled: true, CertFile: "c"}}, "cert_file and key_file"},
		{"ca without tls", Config{Addrs: []string{"a:1"}, TLS: TLS{CAFile: "ca"}}, "tls.enabled"},
		{"negative cluster reload", Config{Mode: Cluster, Addrs: []string{"a:1"}, ClusterReloadInterval: -1}, "cluster_reload_interval: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestNewClientTalksToRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Addrs: []string{srv.Addr}}
	c, err := cfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := c.Get(ctx, "k").Val(); got != "v" {
		t.Fatalf("GET = %q, want v", got)
	}
}

func TestClusterClientTalksToRealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cl := redistest.StartCluster(t, 3)
	cfg := Config{Mode: Cluster, Addrs: cl.Addrs()}
	c, err := cfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A short slot-map refresh, so that a failover is noticed (see
	// TestRedisResClusterFailover in internal/server).
	if cc, ok := c.(*redis.ClusterClient); !ok || cc.Options().ClusterStateReloadInterval != DefaultClusterReloadInterval {
		t.Fatalf("client %T does not reload the cluster state every %v", c, DefaultClusterReloadInterval)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range []string{"a", "b", "c", "d", "e"} { // spread over slots
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	if got := c.Get(ctx, "e").Val(); got != "e" {
		t.Fatalf("GET e = %q", got)
	}
}

func TestMetricsHookCountsCallsAndErrors(t *testing.T) {
	srv := redistest.Start(t)
	reg := prometheus.NewRegistry()
	cfg := Config{Addrs: []string{srv.Addr}, ReadTimeout: 100 * time.Millisecond}
	c, err := cfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.AddHook(NewMetricsHook(reg))
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.Get(ctx, "missing") // redis.Nil is not an error
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { p.Incr(ctx, "n"); p.Incr(ctx, "n"); return nil }); err != nil {
		t.Fatal(err)
	}
	c.Do(ctx, "NOSUCHCOMMAND")
	srv.Pause()
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	c.Get(tctx, "k")
	cancel()
	srv.Resume()

	if n := testutil.CollectAndCount(reg, "ext_authz_redis_call_duration_seconds"); n < 3 {
		t.Errorf("%d duration series, want set, get, pipeline, ...", n)
	}
	want := `
# HELP ext_authz_redis_errors_total Failed Redis round trips by command (dial: failed connects) and error class (timeout, network, server, pool, canceled, other).
# TYPE ext_authz_redis_errors_total counter
ext_authz_redis_errors_total{class="server",command="nosuchcommand"} 1
ext_authz_redis_errors_total{class="timeout",command="get"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ext_authz_redis_errors_total"); err != nil {
		t.Error(err)
	}
}
