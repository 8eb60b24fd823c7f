package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/tokens"
	tokensredis "github.com/ext-authz/ext-authz/tokens/redis"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// The revocation tests run several real ext-authz processes over one real
// redis-server, revoke credentials through the store's own writer (what
// the UDB and `token revoke` do), and time the write to the first 401 on
// every replica.

func revConfig(redisAddr string, enabled bool, maxStaleness time.Duration) string {
	return `server:
  grpc_address: "127.0.0.1:0"
  drain_delay: 10ms
  reload_interval: -1s
admin:
  address: "127.0.0.1:0"
redis:
  addrs: ["` + redisAddr + `"]
  read_timeout: 300ms
revocation: {enabled: ` + fmt.Sprint(enabled) + `, max_staleness: ` + maxStaleness.String() + `, lookup_timeout: 100ms}
authenticators:
  - name: session
    source: {cookie: sid}
    udb_session: {cache_ttl: 10m}
  - name: ticket
    source: {header: x-udb-token}
    udb_ticket: {keys: [{id: dev-1, file: "` + servicetest.QuickstartKeys() + `ticket-hs256.key"}]}
  - name: jwt
    source: {authorization: Bearer}
    jwt: {issuers: [{issuer: "https://issuer.quickstart.example", jwks_file: "` + servicetest.QuickstartKeys() + `jwks.json"}]}
policy:
  rules:
    - {name: session, match: {path: {prefix: /s/}}, action: authenticate, authenticators: [session]}
    - {name: ticket, match: {path: {prefix: /t/}}, action: authenticate, authenticators: [ticket]}
    - {name: jwt, match: {path: {prefix: /j/}}, action: authenticate, authenticators: [jwt]}
`
}

type revReplica struct {
	proc   *servicetest.Proc
	client authv3.AuthorizationClient
}

// revFleet is n replicas of one config over one Redis.
type revFleet struct {
	redis    *redistest.Server
	rdb      *goredis.Client
	store    *tokensredis.RevocationStore
	replicas []*revReplica
	jwt      *tokens.JWTSigner
	ticket   *tokens.TicketSigner
	seq      atomic.Int64
}

func startRevFleet(t *testing.T, n int, enabled bool, maxStaleness time.Duration) *revFleet {
	t.Helper()
	f := &revFleet{redis: redistest.Start(t)}
	f.rdb = goredis.NewClient(&goredis.Options{Addr: f.redis.Addr})
	t.Cleanup(func() { _ = f.rdb.Close() })
	f.store = tokensredis.NewRevocationStore(f.rdb, tokensredis.RevocationOptions{})
	var err error
	if f.jwt, err = tokens.NewJWTSigner(servicetest.QuickstartKeys()+"jwt-es256.pem", "dev-es256-1", ""); err != nil {
		t.Fatal(err)
	}
	if f.ticket, err = tokens.NewTicketSigner("dev-1", tokens.TicketHS256, servicetest.QuickstartKeys()+"ticket-hs256.key"); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	servicetest.WriteFile(t, cfg, revConfig(f.redis.Addr, enabled, maxStaleness))
	for range n {
		p := servicetest.StartBinary(t, cfg)
		conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		f.replicas = append(f.replicas, &revReplica{proc: p, client: authv3.NewAuthorizationClient(conn)})
	}
	for _, r := range f.replicas {
		waitReady(t, r.proc.AdminAddr)
	}
	return f
}

func waitReady(t *testing.T, admin string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := readyz(t, admin)
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %d %s", admin, code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readyz(t *testing.T, admin string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// cred is a credential of one kind with the record that revokes it.
type cred struct {
	kind   string
	path   string
	header [2]string
	record revocation.Record
}

func (c *cred) request() *authv3.CheckRequest {
	return extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: c.path, Headers: [][2]string{c.header}})
}

// newCred makes a fresh credential of kind: session, ticket, jwt (revoked
// by jti) or subject (a JWT revoked by its subject's epoch).
func (f *revFleet) newCred(t *testing.T, kind string) *cred {
	t.Helper()
	n := f.seq.Add(1)
	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	switch kind {
	case "session":
		var b [18]byte
		_, _ = rand.Read(b[:])
		tok := base64.RawURLEncoding.EncodeToString(b[:])
		sum := sha256.Sum256([]byte(tok))
		if err := f.rdb.HSet(context.Background(), "udb:session:"+hex.EncodeToString(sum[:]), "uid", fmt.Sprint("u-", n), "iat", now.Unix(), "exp", exp).Err(); err != nil {
			t.Fatal(err)
		}
		return &cred{kind: kind, path: "/s/x", header: [2]string{"cookie", "sid=" + tok}, record: revocation.Record{Kind: revocation.KindSession, ID: string(sum[:]), At: exp}}
	case "ticket":
		id := fmt.Sprint("t-", n)
		tok, err := f.ticket.Sign(tokens.TicketClaims{UserID: fmt.Sprint("u-", n), IssuedAt: now, Expiry: now.Add(time.Hour), Extra: map[string]any{"jti": id}})
		if err != nil {
			t.Fatal(err)
		}
		return &cred{kind: kind, path: "/t/x", header: [2]string{"x-udb-token", tok}, record: revocation.Record{Kind: revocation.KindTicket, ID: id, At: exp}}
	case "jwt", "subject":
		sub, id := fmt.Sprint("u-", n), fmt.Sprint("j-", n)
		tok, err := f.jwt.Sign(map[string]any{"iss": "https://issuer.quickstart.example", "sub": sub, "jti": id,
			"iat": now.Unix() - 2, "exp": exp})
		if err != nil {
			t.Fatal(err)
		}
		c := &cred{kind: kind, path: "/j/x", header: [2]string{"authorization", "Bearer " + tok}, record: revocation.Record{Kind: revocation.KindJTI, ID: id, At: exp}}
		if kind == "subject" {
			c.record = revocation.Record{Kind: revocation.KindSubject, ID: sub, At: now.Unix()}
		}
		return c
	}
	t.Fatalf("unknown kind %s", kind)
	return nil
}

func (r *revReplica) status(c *cred) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := r.client.Check(ctx, c.request())
	if err != nil {
		return 0, err
	}
	return httpStatusOf(resp), nil
}

// warm makes every replica accept (and cache) c.
func (f *revFleet) warm(t *testing.T, c *cred) {
	t.Helper()
	for i, r := range f.replicas {
		for range 2 {
			if s, err := r.status(c); s != 200 {
				t.Fatalf("%s on replica %d before revocation: %d %v", c.kind, i, s, err)
			}
		}
	}
}

// revokeAndTime revokes c and returns, per replica, the time from the
// write to the first 401 (polling every 500µs; at most limit).
func (f *revFleet) revokeAndTime(t *testing.T, c *cred, limit time.Duration) []time.Duration {
	t.Helper()
	out := make([]time.Duration, len(f.replicas))
	var wg sync.WaitGroup
	start := make(chan time.Time)
	for i, r := range f.replicas {
		wg.Go(func() {
			began := <-start
			for {
				s, _ := r.status(c)
				if s == 401 {
					out[i] = time.Since(began)
					return
				}
				if time.Since(began) > limit {
					out[i] = -1
					return
				}
				time.Sleep(500 * time.Microsecond)
			}
		})
	}
	began := time.Now()
	for range f.replicas {
		start <- began
	}
	if err := f.store.Revoke(context.Background(), time.Now(), c.record); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, d := range out {
		if d < 0 {
			t.Errorf("%s: replica %d still accepts it %s after the write", c.kind, i, limit)
		}
	}
	return out
}

// TestRevocationEndToEnd: three replicas, each kind revoked while cached,
// the denial's shape, a malleated signature, a dropped subscription, a
// paused replica and a Redis restart: every replica refuses the revoked
// credential within max_staleness.
func TestRevocationEndToEnd(t *testing.T) {
	const maxStaleness = 500 * time.Millisecond
	began := time.Now()
	f := startRevFleet(t, 3, true, maxStaleness)
	t.Logf("3 replicas ready in %s", time.Since(began))
	var all []time.Duration
	for _, kind := range []string{"session", "ticket", "jwt", "subject"} {
		for range 2 {
			c := f.newCred(t, kind)
			f.warm(t, c)
			all = append(all, f.revokeAndTime(t, c, maxStaleness)...)
		}
	}
	slices.Sort(all)
	t.Logf("write to first 401 over %d replica-trials: p50 %s, max %s", len(all), all[len(all)/2], all[len(all)-1])

	// The denial: 401, reason revoked in the body and the challenge.
	c := f.newCred(t, "jwt")
	f.warm(t, c)
	f.revokeAndTime(t, c, maxStaleness)
	resp, err := f.replicas[0].client.Check(context.Background(), c.request())
	if err != nil {
		t.Fatal(err)
	}
	if got := deniedHeader(resp, "www-authenticate"); len(got) == 0 || !strings.Contains(strings.Join(got, " "), `error_description="revoked"`) {
		t.Errorf("challenge %q, want error_description=\"revoked\"", got)
	}
	if body := resp.GetDeniedResponse().GetBody(); !strings.Contains(body, "revoked") {
		t.Errorf("body %q lacks the reason", body)
	}
	// The same JWT with its ES256 signature malleated to (r, n-s): another
	// token, as valid, revoked all the same.
	m := *c
	m.header = [2]string{"authorization", "Bearer " + malleate(t, strings.TrimPrefix(c.header[1], "Bearer "))}
	for i, r := range f.replicas {
		if s, err := r.status(&m); s != 401 {
			t.Errorf("malleated copy on replica %d: %d %v", i, s, err)
		}
	}

	// The subscription drops (every client connection killed): each
	// replica reads on from its position.
	c = f.newCred(t, "ticket")
	f.warm(t, c)
	if _, err := f.redis.Do("CLIENT", "KILL", "TYPE", "normal"); err != nil {
		t.Fatal(err)
	}
	d := f.revokeAndTime(t, c, maxStaleness)
	t.Logf("after CLIENT KILL: %v", d)

	// A replica paused (SIGSTOP) for longer than max_staleness while a
	// revocation is written refuses it on its first Check after SIGCONT.
	c = f.newCred(t, "jwt")
	f.warm(t, c)
	p := f.replicas[2].proc.Cmd.Process
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Revoke(context.Background(), time.Now(), c.record); err != nil {
		_ = p.Signal(syscall.SIGCONT)
		t.Fatal(err)
	}
	time.Sleep(maxStaleness + 200*time.Millisecond)
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if s, err := f.replicas[2].status(c); s != 401 {
		t.Errorf("paused replica's first Check after SIGCONT: %d %v, want 401", s, err)
	}
	// Paused for less than max_staleness, it may answer from memory that
	// is not older than that: it converges within max_staleness.
	c = f.newCred(t, "ticket")
	f.warm(t, c)
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	if err := f.store.Revoke(context.Background(), written, c.record); err != nil {
		_ = p.Signal(syscall.SIGCONT)
		t.Fatal(err)
	}
	time.Sleep(maxStaleness / 4)
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for {
		if s, _ := f.replicas[2].status(c); s == 401 {
			break
		}
		if time.Since(written) > maxStaleness {
			t.Fatalf("replica paused for %s: still accepts %s after the write", maxStaleness/4, time.Since(written))
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("replica paused for %s: revoked %s after the write", maxStaleness/4, time.Since(written))

	// Redis goes down: past max_staleness each replica is degraded (still
	// ready) and answers 503 rather than trust old memory; after a
	// restart (empty: no persistence) what they knew stays revoked and a
	// new revocation arrives.
	fresh := f.newCred(t, "jwt")
	f.warm(t, fresh)
	f.redis.Stop()
	time.Sleep(maxStaleness + 300*time.Millisecond)
	if code, body := readyz(t, f.replicas[0].proc.AdminAddr); code != 200 || !strings.Contains(body, "degraded: revocation") {
		t.Errorf("readyz while Redis is down: %d %q", code, body)
	}
	if s, err := f.replicas[0].status(fresh); s != 503 {
		t.Errorf("stale revocations with Redis down: %d %v, want 503", s, err)
	}
	f.redis.Restart()
	for i := range f.replicas {
		deadline := time.Now().Add(5 * time.Second)
		for {
			if s, _ := f.replicas[i].status(fresh); s == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d does not recover after the Redis restart", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if s, _ := f.replicas[i].status(c); s != 401 {
			t.Errorf("replica %d forgot a revocation Redis lost: %d", i, s)
		}
	}
	d = f.revokeAndTime(t, fresh, maxStaleness)
	t.Logf("after a Redis restart: %v", d)
}

// malleate turns an ES256 JWT's signature (r, s) into (r, n-s).
func malleate(t *testing.T, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("not an ES256 signature: %v", err)
	}
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(append(sig[:32:32], negS(sig[32:])...))
}
