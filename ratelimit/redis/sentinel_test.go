package redis_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/ratelimittest"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
)

// startSentinel runs redis-server in sentinel mode watching master on a
// free port, and stops it at the end of the test.
func startSentinel(t *testing.T, master *redistest.Server) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := "port " + strconv.Itoa(port) + "\nbind 127.0.0.1\nprotected-mode no\ndir " + dir + "\n" +
		"sentinel monitor rl 127.0.0.1 " + strconv.Itoa(master.Port) + " 1\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := goredis.NewSentinelClient(&goredis.Options{Addr: addr})
		m, err := c.GetMasterAddrByName(context.Background(), "rl").Result()
		_ = c.Close()
		if err == nil && len(m) == 2 && m[1] == strconv.Itoa(master.Port) {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel on %s does not know master rl: %v %v", addr, m, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestContractSentinel: the store over a UniversalClient in sentinel mode
// (how redisconf builds it for mode: sentinel) passes the contract.
func TestContractSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := startSentinel(t, master)
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{sentinel}, MasterName: "rl", MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	newStore := func(t *testing.T) ratelimit.Store { return running(t, c, rlredis.Options{}) }
	t.Run("store", func(t *testing.T) { ratelimittest.RunStoreContract(t, newStore) })
	t.Run("limiter", func(t *testing.T) { ratelimittest.RunLimiterContract(t, newStore) })
}
