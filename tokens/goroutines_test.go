package tokens

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// blackHole is a JWKS endpoint that accepts connections and never answers,
// like a stalled identity provider. Its accept loop starts before the
// caller takes a goleak.IgnoreCurrent snapshot, so the only goroutines a
// test sees afterwards are the ones the code under test started.
type blackHole struct {
	URL      string
	accepted chan net.Conn
}

func newBlackHole(t *testing.T) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{URL: "http://" + ln.Addr().String() + "/jwks.json", accepted: make(chan net.Conn, 16)}
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted <- c
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-loopDone
		for {
			select {
			case c := <-b.accepted:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return b
}

// waitAccepted waits until a fetch has connected, so it is in flight.
func (b *blackHole) waitAccepted(t *testing.T) {
	t.Helper()
	select {
	case c := <-b.accepted:
		b.accepted <- c // keep it open until cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("no JWKS fetch reached the endpoint")
	}
}

// blackHoleVerifier fetches its keys only from b, through a transport of
// its own (no idle connections shared with other tests).
func blackHoleVerifier(t *testing.T, b *blackHole, fetchTimeout time.Duration) (*JWTVerifier, *http.Transport) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	log, _ := logBuffer()
	v, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{{
		Issuer: testIssuer, JWKSURL: b.URL, FetchTimeout: fetchTimeout,
		RefreshInterval: time.Hour, MinRefreshInterval: time.Millisecond,
	}}}, JWTOptions{Options: Options{Logger: log}, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	return v, tr
}

// TestJWTVerifierRunLeavesNoGoroutines stops Run while its first fetch
// hangs on a JWKS endpoint that never answers (fetch_timeout 30s): Run
// returns at once, and the fetch, its connection's goroutines and the
// refresh loop are all gone when it has returned.
func TestJWTVerifierRunLeavesNoGoroutines(t *testing.T) {
	b := newBlackHole(t)
	v, tr := blackHoleVerifier(t, b, 30*time.Second)
	before := goleak.IgnoreCurrent()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	b.waitAccepted(t)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return 5s after its context was cancelled")
	}
	t.Logf("Run returned %v after cancel", time.Since(start))
	// A fetch cancelled while its connection was still being dialled
	// leaves that connection idle in the transport's keep-alive pool (net/http
	// finishes dials for reuse). Idle connections belong to the transport,
	// not to Run (in production: http.DefaultTransport, closed after 90s
	// idle), so they are closed here; a connection still carrying Run's
	// request is not idle and would be reported.
	tr.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}

// TestJWKSAbandonedRefetchEndsAtFetchTimeout: a Verify whose caller gives
// up leaves its unknown-kid refetch running for the callers that may join
// it (singleflight), but no longer than fetch_timeout.
func TestJWKSAbandonedRefetchEndsAtFetchTimeout(t *testing.T) {
	const fetchTimeout = 300 * time.Millisecond
	b := newBlackHole(t)
	v, tr := blackHoleVerifier(t, b, fetchTimeout)
	k := getKeys(t)
	tok := mint(t, "RS256", "a", k.rsa, liveClaims())
	before := goleak.IgnoreCurrent()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := v.Verify(ctx, tok); err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("Verify = %v, want could-not-decide", err)
	}
	deadline := time.Now().Add(fetchTimeout + 2*time.Second)
	for time.Now().Before(deadline) && goleak.Find(before) != nil {
		tr.CloseIdleConnections() // see TestJWTVerifierRunLeavesNoGoroutines
		time.Sleep(20 * time.Millisecond)
	}
	goleak.VerifyNone(t, before)
	t.Logf("Verify gave up after 20ms; its refetch's goroutines had ended %v after the call started", time.Since(start))
}

// TestJWKSLookupJoinedToStoppedRunIsUndecided: a Verify whose unknown-kid
// refetch joined Run's fetch when Run was stopped (reload, shutdown) gets a
// could-not-decide error, not ErrUnknownKey: the kid was never checked.
func TestJWKSLookupJoinedToStoppedRunIsUndecided(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwksJSON(jwk("a", k.rsa)))
	v, _, _ := remoteFixture(t, srv, func(c *IssuerConfig) {
		c.RefreshInterval = 20 * time.Millisecond
		c.MinRefreshInterval = time.Hour
		c.FetchTimeout = 30 * time.Second
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "ready", func() bool { return v.Ready() == nil })

	hold := make(chan struct{})
	defer close(hold)
	srv.mu.Lock()
	srv.hold = hold
	srv.mu.Unlock()
	hits := srv.hits.Load()
	eventually(t, "Run's next fetch in flight", func() bool { return srv.hits.Load() > hits })

	got := make(chan error, 1)
	go func() {
		vctx, vcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer vcancel()
		_, err := v.Verify(vctx, mint(t, "ES256", "new", k.ec, liveClaims()))
		got <- err
	}()
	time.Sleep(200 * time.Millisecond) // let Verify join the fetch in flight
	cancel()
	select {
	case err := <-got:
		if errors.Is(err, ErrInvalid) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Verify = %v, want could-not-decide (context canceled)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Verify still waiting 5s after Run stopped")
	}
}
