package redis_test

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/tokens"
	"github.com/ext-authz/ext-authz/tokens/redis"
)

const token = "sess_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a session verifier over a real redis-server.
type fixture struct {
	srv    *redistest.Server
	client goredis.UniversalClient
	v      *tokens.SessionVerifier
	cfg    tokens.SessionConfig
	clock  *clock
}

func newFixture(t *testing.T, contextTimeouts bool) *fixture {
	t.Helper()
	srv := redistest.Start(t)
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs: []string{srv.Addr}, ContextTimeoutEnabled: contextTimeouts,
		MaxRetries: -1, ReadTimeout: 2 * time.Second, DialTimeout: time.Second,
	})
	t.Cleanup(func() { client.Close() })
	return newFixtureWith(t, srv, client)
}

func newFixtureWith(t *testing.T, srv *redistest.Server, client goredis.UniversalClient) *fixture {
	t.Helper()
	f := &fixture{srv: srv, client: client, clock: &clock{t: time.Now()}}
	f.cfg = tokens.SessionConfig{CacheTTL: 5 * time.Second, NegativeCacheTTL: 2 * time.Second, Timeout: 150 * time.Millisecond}
	var err error
	f.v, err = tokens.NewSessionVerifier(f.cfg, redis.NewStore(client), tokens.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.cfg.ApplyDefaults()
	return f
}

// write stores a session the way the user database does.
func (f *fixture) write(t *testing.T, tok string, fields ...string) {
	t.Helper()
	key := f.cfg.SessionKey(tok)
	if err := f.client.HSet(context.Background(), key, fields).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.client.Expire(context.Background(), key, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
}

var hgetallCalls = regexp.MustCompile(`cmdstat_hgetall:calls=(\d+)`)

// hgetalls reads how many HGETALLs the server has answered.
func (f *fixture) hgetalls(t *testing.T) int {
	t.Helper()
	info, err := f.srv.Do("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	m := hgetallCalls.FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestLookupAndRevocationByDEL(t *testing.T) {
	f := newFixture(t, true)
	exp := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	f.write(t, token, "uid", "u-1", "app", "shop", "exp", exp, "scope", "a b", "plan", "pro")
	ctx := context.Background()
	p, err := f.v.Verify(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "u-1" || p.AppID != "shop" || p.Method != tokens.MethodUDBSession || len(p.Scopes) != 2 || p.Claims["plan"] != "pro" {
		t.Fatalf("principal = %+v", p)
	}
	// Revoke by deleting the key: the positive cache serves the session
	// until its TTL passes, then the session is gone.
	if err := f.client.Del(ctx, f.cfg.SessionKey(token)).Err(); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(4 * time.Second)
	if _, err := f.v.Verify(ctx, token); err != nil {
		t.Fatalf("within cache TTL: %v", err)
	}
	f.clock.Advance(time.Second + time.Millisecond)
	if _, err := f.v.Verify(ctx, token); !errors.Is(err, tokens.ErrUnknownCredential) {
		t.Fatalf("after DEL and cache TTL: %v", err)
	}
}

func TestRevokedTombstone(t *testing.T) {
	f := newFixture(t, true)
	f.write(t, token, "uid", "u-1", "revoked", "1")
	if _, err := f.v.Verify(context.Background(), token); !errors.Is(err, tokens.ErrRevoked) {
		t.Fatalf("Verify = %v, want revoked", err)
	}
}

func TestNegativeCache(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	before := f.hgetalls(t)
	for range 5 {
		if _, err := f.v.Verify(ctx, token); !errors.Is(err, tokens.ErrUnknownCredential) {
			t.Fatalf("unknown session: %v", err)
		}
	}
	if got := f.hgetalls(t) - before; got != 1 {
		t.Fatalf("HGETALL calls = %d, want 1 (negative cache)", got)
	}
	// The session appears (e.g. a login raced the first request): it is
	// seen once the negative TTL passes.
	f.write(t, token, "uid", "u-2")
	f.clock.Advance(2 * time.Second)
	if p, err := f.v.Verify(ctx, token); err != nil || p.Subject != "u-2" {
		t.Fatalf("after negative TTL: %+v, %v", p, err)
	}
}

func TestSingleflight(t *testing.T) {
	f := newFixture(t, true)
	f.write(t, token, "uid", "u-1")
	before := f.hgetalls(t)
	// Hold the server so every lookup arrives while the first is in
	// flight, then let it answer.
	f.srv.Pause()
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ctx := context.Background()
	for range n {
		wg.Go(func() {
			_, err := f.v.Verify(ctx, token)
			errs <- err
		})
	}
	time.Sleep(30 * time.Millisecond)
	f.srv.Resume()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Verify = %v", err)
		}
	}
	if got := f.hgetalls(t) - before; got != 1 {
		t.Fatalf("HGETALL calls = %d for %d concurrent lookups, want 1", got, n)
	}
}

func TestPausedServerTimesOut(t *testing.T) {
	for _, contextTimeouts := range []bool{true, false} {
		t.Run("context_timeouts="+strconv.FormatBool(contextTimeouts), func(t *testing.T) {
			f := newFixture(t, contextTimeouts)
			f.write(t, token, "uid", "u-1")
			f.srv.Pause()
			defer f.srv.Resume()
			start := time.Now()
			_, err := f.v.Verify(context.Background(), token)
			took := time.Since(start)
			if err == nil || errors.Is(err, tokens.ErrInvalid) {
				t.Fatalf("Verify = %v, want a could-not-decide error", err)
			}
			// 150ms timeout; generous slack for a loaded machine.
			if took > 600*time.Millisecond {
				t.Fatalf("Verify took %v with a 150ms timeout", took)
			}
		})
	}
}

func TestRedisDown(t *testing.T) {
	f := newFixture(t, true)
	f.srv.Stop()
	_, err := f.v.Verify(context.Background(), token)
	if err == nil || errors.Is(err, tokens.ErrInvalid) {
		t.Fatalf("Verify = %v, want a could-not-decide error", err)
	}
	if tokens.Reason(err) != "" {
		t.Fatalf("reason = %q for a store failure", tokens.Reason(err))
	}
}

func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	f := newFixtureWith(t, c.Servers[0], client)
	for i := range 20 {
		tok := token + strconv.Itoa(i) // spread over slots
		f.write(t, tok, "uid", "u-"+strconv.Itoa(i))
		p, err := f.v.Verify(context.Background(), tok)
		if err != nil || p.Subject != "u-"+strconv.Itoa(i) {
			t.Fatalf("session %d: %+v, %v", i, p, err)
		}
	}
}
