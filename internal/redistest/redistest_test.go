package redistest

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStandaloneRestart(t *testing.T) {
	s := Start(t)
	if _, err := s.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Do("GET", "k")
	if err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want v", got, err)
	}
	s.Stop()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING succeeded after Stop")
	}
	s.Restart()
	if got, err := s.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING after Restart = %q, %v", got, err)
	}
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start takes a few seconds")
	}
	c := StartCluster(t, 3)
	info, err := c.Servers[0].Do("CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_known_nodes:3") {
		t.Fatalf("CLUSTER INFO = %q, %v", info, err)
	}
}

func TestKeySlot(t *testing.T) {
	tests := []struct {
		give string
		want int
	}{
		// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
		{"123456789", 12739},
		{"foo", 12182},
		{"{user1000}.following", KeySlot("user1000")},
		{"{}foo", KeySlot("{}foo")}, // an empty tag hashes the whole key
		{"foo{}{bar}", 8363},
	}
	for _, tt := range tests {
		if got := KeySlot(tt.give); got != tt.want {
			t.Errorf("KeySlot(%q) = %d, want %d", tt.give, got, tt.want)
		}
	}
}

// TestClusterFailover: a cluster with replicas; killing the master of a
// key's slot promotes its replica, which then serves the key.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start and failover take a few seconds")
	}
	c := StartClusterReplicas(t, 3, 1, time.Second)
	if len(c.Servers) != 6 {
		t.Fatalf("%d servers, want 6", len(c.Servers))
	}
	const key = "{failover}:k"
	owner := c.Owner(t, key)
	got, err := owner.Do("CLUSTER", "KEYSLOT", key)
	if err != nil || got != strconv.Itoa(KeySlot(key)) {
		t.Fatalf("CLUSTER KEYSLOT = %q, %v; KeySlot = %d", got, err, KeySlot(key))
	}
	if _, err := owner.Do("SET", key, "v"); err != nil {
		t.Fatal(err)
	}
	// Let the write reach the replica before the master dies.
	if n, err := owner.Do("WAIT", "1", "2000"); err != nil || n != "1" {
		t.Fatalf("WAIT 1 = %q, %v", n, err)
	}
	killed := time.Now()
	promoted, at := c.KillMaster(t, owner, 20*time.Second)
	t.Logf("failover took %v", at.Sub(killed).Round(time.Millisecond))
	if promoted == owner {
		t.Fatal("the killed master was returned as promoted")
	}
	if now := c.Owner(t, key); now != promoted {
		t.Fatalf("owner after failover = %s, promoted = %s", now.Addr, promoted.Addr)
	}
	if got, err := promoted.Do("GET", key); err != nil || got != "v" {
		t.Fatalf("GET on the promoted replica = %q, %v", got, err)
	}
}

func TestReplicasCaughtUp(t *testing.T) {
	const head = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n"
	tests := []struct {
		give string
		want bool
	}{
		{head + "slave0:ip=127.0.0.1,port=7001,state=online,offset=140,lag=0\r\nmaster_repl_offset:140\r\n", true},
		{head + "slave0:ip=127.0.0.1,port=7001,state=online,offset=126,lag=0\r\nmaster_repl_offset:140\r\n", false},
		{head + "slave0:ip=127.0.0.1,port=7001,state=wait_bgsave,offset=0,lag=0\r\nmaster_repl_offset:140\r\n", false},
		{"# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_repl_offset:140\r\n", false},
	}
	for _, tt := range tests {
		if got := replicasCaughtUp(tt.give); got != tt.want {
			t.Errorf("replicasCaughtUp(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}
