package redis_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/tokens/redis"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

func digest(s string) string { d := sha256.Sum256([]byte(s)); return string(d[:]) }

// runList starts l.Run and stops it (waiting) at the end of the test.
func runList(t *testing.T, l *revocation.List) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = l.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func newClient(t *testing.T, addr string) goredis.UniversalClient {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRevocationStoreRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	st := redis.NewRevocationStore(newClient(t, srv.Addr), redis.RevocationOptions{})
	ctx := context.Background()
	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	recs := []revocation.Record{
		{Kind: revocation.KindJTI, ID: "jti-1", At: exp},
		{Kind: revocation.KindSID, ID: "sid-1", At: exp},
		{Kind: revocation.KindTicket, ID: "t-1", At: exp},
		{Kind: revocation.KindSession, ID: digest("session-token-0001"), At: exp},
		{Kind: revocation.KindAPIKey, ID: digest("api-key"), At: 0},
		{Kind: revocation.KindSubject, ID: "u-1", At: now.Unix()},
		{Kind: revocation.KindSubject, ID: "u-2", App: "shop", At: now.Unix()},
	}
	for _, r := range recs {
		if err := st.Revoke(ctx, now, r); err != nil {
			t.Fatalf("Revoke(%v): %v", r.Kind, err)
		}
	}
	// An invalid record is refused before it reaches Redis.
	if err := st.Revoke(ctx, now, revocation.Record{Kind: revocation.KindSession, ID: "not-a-digest", At: exp}); err == nil {
		t.Error("Revoke accepted a session id that is not a digest")
	}
	var got []revocation.Record
	cursor, err := st.Snapshot(ctx, now, func(r revocation.Record) { got = append(got, r) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("snapshot: got %d records %v, want %d", len(got), got, len(recs))
	}
	for _, want := range recs {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("snapshot lacks %+v", want)
		}
	}
	// The log holds the same records, in order, and the snapshot's cursor
	// is its end.
	logged, next, err := st.Read(ctx, "0-0", 10*time.Millisecond)
	if err != nil || len(logged) != len(recs) || next != cursor {
		t.Fatalf("Read from 0: %d records, next %s (snapshot %s), err %v", len(logged), next, cursor, err)
	}
	for i := range recs {
		if logged[i] != recs[i] {
			t.Errorf("log[%d] = %+v, want %+v", i, logged[i], recs[i])
		}
	}
	// Lookups.
	tests := []struct {
		name string
		give revocation.Query
		want revocation.Found
	}{
		{"jti", revocation.Query{IDs: [5]string{revocation.KindJTI: "jti-1"}}, revocation.Found{Cred: true, Kind: revocation.KindJTI}},
		{"other jti", revocation.Query{IDs: [5]string{revocation.KindJTI: "jti-2"}}, revocation.Found{}},
		{"session", revocation.Query{IDs: [5]string{revocation.KindSession: digest("session-token-0001")}}, revocation.Found{Cred: true, Kind: revocation.KindSession}},
		{"api key", revocation.Query{IDs: [5]string{revocation.KindAPIKey: digest("api-key")}}, revocation.Found{Cred: true, Kind: revocation.KindAPIKey}},
		{"subject", revocation.Query{Subject: "u-1", App: "x"}, revocation.Found{Epoch: now.Unix()}},
		{"subject app", revocation.Query{Subject: "u-2", App: "shop"}, revocation.Found{Epoch: now.Unix()}},
		{"subject other app", revocation.Query{Subject: "u-2", App: "blog"}, revocation.Found{}},
		{"nothing", revocation.Query{Subject: "u-3"}, revocation.Found{}},
	}
	for _, tt := range tests {
		got, err := st.Lookup(ctx, &tt.give)
		if err != nil || got != tt.want {
			t.Errorf("%s: Lookup = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
	// A later write with an earlier epoch does not move it back.
	if err := st.Revoke(ctx, now, revocation.Record{Kind: revocation.KindSubject, ID: "u-1", At: now.Unix() - 100}); err != nil {
		t.Fatal(err)
	}
	if f, _ := st.Lookup(ctx, &revocation.Query{Subject: "u-1"}); f.Epoch != now.Unix() {
		t.Errorf("epoch moved back to %d", f.Epoch)
	}
}

func TestRevocationStoreGap(t *testing.T) {
	srv := redistest.Start(t)
	st := redis.NewRevocationStore(newClient(t, srv.Addr), redis.RevocationOptions{MaxLen: 10})
	ctx := context.Background()
	now := time.Now()
	if err := st.Revoke(ctx, now, revocation.Record{Kind: revocation.KindJTI, ID: "first", At: now.Add(time.Hour).Unix()}); err != nil {
		t.Fatal(err)
	}
	_, cursor, err := st.Read(ctx, "0-0", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Far more than MaxLen later writes trim the log past cursor.
	for i := range 500 {
		if err := st.Revoke(ctx, now, revocation.Record{Kind: revocation.KindJTI, ID: fmt.Sprint("j", i), At: now.Add(time.Hour).Unix()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.Read(ctx, cursor, time.Millisecond); !errors.Is(err, revocation.ErrGap) {
		t.Fatalf("Read past a trimmed log: err %v, want ErrGap", err)
	}
	// A log that is gone (Redis lost it) is a gap too.
	if _, err := srv.Do("DEL", st.Keys()[3]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Read(ctx, cursor, time.Millisecond); !errors.Is(err, revocation.ErrGap) {
		t.Fatalf("Read of a deleted log: err %v, want ErrGap", err)
	}
}

func jtiQuery(j string) *revocation.Query {
	return &revocation.Query{IDs: [5]string{revocation.KindJTI: j}}
}

// TestListFollowsRedis runs a List over real Redis through a trimmed log,
// a killed connection and a Redis restart: each revocation reaches memory.
func TestListFollowsRedis(t *testing.T) {
	srv := redistest.Start(t)
	writer := redis.NewRevocationStore(newClient(t, srv.Addr), redis.RevocationOptions{MaxLen: 50})
	reader := redis.NewRevocationStore(newClient(t, srv.Addr), redis.RevocationOptions{MaxLen: 50})
	l := revocation.New(reader, revocation.Options{MaxStaleness: 400 * time.Millisecond})
	ctx := context.Background()
	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	if err := writer.Revoke(ctx, now, revocation.Record{Kind: revocation.KindJTI, ID: "before-start", At: exp}); err != nil {
		t.Fatal(err)
	}
	if l.Ready() == nil {
		t.Fatal("ready before Run loaded anything")
	}
	runList(t, l)
	waitFor(t, 5*time.Second, "ready", func() bool { return l.Ready() == nil })
	if !l.Local(time.Now(), jtiQuery("before-start")).Revoked {
		t.Error("record written before start not loaded")
	}
	revoke := func(id string) {
		t.Helper()
		if err := writer.Revoke(ctx, time.Now(), revocation.Record{Kind: revocation.KindJTI, ID: id, At: exp}); err != nil {
			t.Fatal(err)
		}
	}
	seen := func(id string) func() bool {
		return func() bool {
			v, err := l.Check(ctx, time.Now(), jtiQuery(id))
			return err == nil && v.Revoked && l.Local(time.Now(), jtiQuery(id)).Revoked
		}
	}
	revoke("live")
	// Timing is measured by TestRevocationProof, not asserted here.
	waitFor(t, 5*time.Second, "live revocation", seen("live"))
	// The reader's connection is killed: it reconnects from its position.
	if _, err := srv.Do("CLIENT", "KILL", "TYPE", "normal"); err != nil {
		t.Fatal(err)
	}
	revoke("after-kill")
	waitFor(t, 5*time.Second, "revocation after CLIENT KILL", seen("after-kill"))
	// Redis restarts empty (no persistence): memory keeps what it knew,
	// and what is written after the restart arrives.
	srv.Restart()
	revoke("after-restart")
	waitFor(t, 5*time.Second, "revocation after restart", seen("after-restart"))
	if !l.Local(time.Now(), jtiQuery("live")).Revoked {
		t.Error("a Redis restart made memory forget a revocation")
	}
	if l.Degraded() != "" {
		t.Errorf("degraded after recovery: %s", l.Degraded())
	}
}

// TestListStaleFallsBackToLookups pauses Redis: past max_staleness a Check
// asks Redis and, with Redis unable to answer, could not be decided.
func TestListStaleFallsBackToLookups(t *testing.T) {
	srv := redistest.Start(t)
	st := redis.NewRevocationStore(newClient(t, srv.Addr), redis.RevocationOptions{})
	l := revocation.New(st, revocation.Options{MaxStaleness: 300 * time.Millisecond, LookupTimeout: 50 * time.Millisecond})
	runList(t, l)
	waitFor(t, 5*time.Second, "ready", func() bool { return l.Ready() == nil })
	srv.Pause()
	defer srv.Resume()
	waitFor(t, 3*time.Second, "degraded", func() bool { return l.Degraded() != "" })
	if _, err := l.Check(context.Background(), time.Now(), jtiQuery("x")); err == nil {
		t.Error("a stale List with Redis paused decided a Check")
	}
	srv.Resume()
	waitFor(t, 5*time.Second, "recovered", func() bool { return l.Degraded() == "" })
	if v, err := l.Check(context.Background(), time.Now(), jtiQuery("x")); err != nil || v.Revoked {
		t.Errorf("after recovery: %+v, %v", v, err)
	}
}

// TestRevocationStoreCluster: every key shares one hash tag, so the
// MULTI/EXEC write, the snapshot, the log and the pipelined lookup work on
// a Redis Cluster too.
func TestRevocationStoreCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	cli := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = cli.Close() })
	st := redis.NewRevocationStore(cli, redis.RevocationOptions{})
	slot := redistest.KeySlot(st.Keys()[0])
	for _, k := range st.Keys() {
		if redistest.KeySlot(k) != slot {
			t.Fatalf("key %s in slot %d, %s in %d", k, redistest.KeySlot(k), st.Keys()[0], slot)
		}
	}
	l := revocation.New(st, revocation.Options{MaxStaleness: time.Second})
	runList(t, l)
	waitFor(t, 10*time.Second, "ready", func() bool { return l.Ready() == nil })
	ctx := context.Background()
	now := time.Now()
	for _, r := range []revocation.Record{
		{Kind: revocation.KindJTI, ID: "cluster-jti", At: now.Add(time.Hour).Unix()},
		{Kind: revocation.KindSubject, ID: "cluster-user", App: "shop", At: now.Unix()},
	} {
		if err := st.Revoke(ctx, now, r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "revocations on the cluster", func() bool { return l.Len() == 2 })
	if f, err := st.Lookup(ctx, &revocation.Query{Subject: "cluster-user", App: "shop", IDs: [5]string{revocation.KindJTI: "cluster-jti"}}); err != nil || !f.Cred {
		t.Errorf("cluster lookup: %+v, %v", f, err)
	}
	var n int
	if _, err := st.Snapshot(ctx, now, func(revocation.Record) { n++ }); err != nil || n != 2 {
		t.Errorf("cluster snapshot: %d records, %v", n, err)
	}
}

// TestRevocationUpperCaseDigest: a writer that puts a session digest in
// upper-case hex is still found by the log, the snapshot and a lookup.
func TestRevocationUpperCaseDigest(t *testing.T) {
	srv := redistest.Start(t)
	cli := newClient(t, srv.Addr)
	st := redis.NewRevocationStore(cli, redis.RevocationOptions{})
	d := digest("upper-case-session-token")
	member := "session:" + strings.ToUpper(hex.EncodeToString([]byte(d)))
	ctx := context.Background()
	if err := cli.ZAdd(ctx, st.Keys()[0], goredis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: member}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cli.XAdd(ctx, &goredis.XAddArgs{Stream: st.Keys()[3], Values: []any{"k", "session", "id", member[len("session:"):], "t", "0"}}).Err(); err != nil {
		t.Fatal(err)
	}
	q := &revocation.Query{}
	q.IDs[revocation.KindSession] = d
	if f, err := st.Lookup(ctx, q); err != nil || !f.Cred {
		t.Errorf("lookup: %+v, %v", f, err)
	}
	var got []revocation.Record
	if _, err := st.Snapshot(ctx, time.Now(), func(r revocation.Record) { got = append(got, r) }); err != nil || len(got) != 1 || got[0].ID != d {
		t.Errorf("snapshot: %+v, %v", got, err)
	}
	recs, _, err := st.Read(ctx, "0-0", time.Millisecond)
	if err != nil || len(recs) != 1 || recs[0].ID != d {
		t.Errorf("log: %+v, %v", recs, err)
	}
}
