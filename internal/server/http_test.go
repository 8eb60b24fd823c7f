package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/authz/httpauthz"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// httpConfig is baseConfig with the HTTP ext_authz listener on, behind
// the /authz path prefix, with overload's extra lines.
func httpConfig(t *testing.T, overload string) string {
	return strings.Replace(servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), ""), "  reload_interval: 50ms\n",
		"  reload_interval: 50ms\n  http_address: \"127.0.0.1:0\"\n  http:\n    path_prefix: /authz\n    max_header_bytes: 8192\n"+overload, 1)
}

// httpCheck sends a check as Envoy's http_service does and returns the
// status, headers and body.
func httpCheck(t *testing.T, h *harness, method, host, path string, headers ...[2]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+h.svc.httpLis.Addr().String()+"/authz"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for _, kv := range headers {
		req.Header.Add(kv[0], kv[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("HTTP check %s %s%s: %v", method, host, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// TestHTTPTransport: the served HTTP endpoint decides as Check does, from
// the same pipeline, and counts in the same decision series.
func TestHTTPTransport(t *testing.T) {
	h := start(t, httpConfig(t, ""))
	status, hdr, body := httpCheck(t, h, "GET", "shop.example.com", "/api/orders", [2]string{"x-api-key", servicetest.KeyAlice},
		[2]string{"x-auth-subject", "forged"}, [2]string{"x-request-id", "rid-1"})
	if status != 200 || hdr.Get("x-auth-subject") != "alice" || hdr.Get("x-auth-team") != "payments" ||
		!strings.Contains(hdr.Get(httpauthz.HeadersToRemove), "x-api-key") {
		t.Errorf("allow: %d %v %q", status, hdr, body)
	}
	grpcResp := h.check(t, "GET", "shop.example.com", "/api/orders", [2]string{"x-api-key", servicetest.KeyAlice})
	if got := upstreamHeaders(grpcResp)["x-auth-subject"]; got != "alice" {
		t.Errorf("gRPC allow: subject %q", got)
	}

	status, hdr, body = httpCheck(t, h, "GET", "shop.example.com", "/admin/users", [2]string{"x-api-key", servicetest.KeyAlice}, [2]string{"x-request-id", "rid-1"})
	if status != 403 || hdr.Get("content-type") != "application/json" ||
		body != `{"error":"forbidden","reason":"insufficient_scope","request_id":"rid-1"}` {
		t.Errorf("deny: %d %v %q", status, hdr, body)
	}
	if status, _, _ = httpCheck(t, h, "GET", "shop.example.com", "/api/x"); status != 401 {
		t.Errorf("no credential: %d, want 401", status)
	}
	metrics := get(t, h.admin+"/metrics")
	for _, want := range []string{
		`ext_authz_decisions_total{reason="insufficient_scope",result="forbidden",rule="admin"} 1`,
		`ext_authz_decisions_total{reason="",result="ok",rule="api"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestHTTPOversizeHeaders: headers beyond server.http.max_header_bytes are
// answered 431 by the server before anything is decided: Envoy passes a
// 4xx to the client as a denial, so the request fails closed.
func TestHTTPOversizeHeaders(t *testing.T) {
	h := start(t, httpConfig(t, ""))
	status, _, _ := httpCheck(t, h, "GET", "shop.example.com", "/api/x", [2]string{"x-api-key", servicetest.KeyAlice},
		[2]string{"x-big", strings.Repeat("a", 16<<10)})
	if status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", status)
	}
	// The server goes on deciding.
	if status, _, _ := httpCheck(t, h, "GET", "shop.example.com", "/api/x", [2]string{"x-api-key", servicetest.KeyAlice}); status != 200 {
		t.Errorf("after the oversize check: %d, want 200", status)
	}
}

// TestHTTPSharesAdmission: the HTTP transport draws on the same
// server.overload budget as Check: with the only turn taken by a slow gRPC
// Check and no queue, an HTTP check is refused with 503 (Envoy:
// status_on_error).
func TestHTTPSharesAdmission(t *testing.T) {
	h := start(t, httpConfig(t, "  overload: {max_in_flight: 1, max_queued: -1}\n"))
	h.svc.live.Store(slowPipeline(t, 500*time.Millisecond))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = h.client.Check(context.Background(), extauthz.BuildCheckRequest(extauthz.HTTPRequest{
			Method: "GET", Host: "h", Path: "/x", Headers: [][2]string{{"x-api-key", "k"}}}))
	}()
	waitFor(t, func() bool { return h.svc.admission.c.InFlight() == 1 }, "the gRPC check to take the turn")
	status, _, body := httpCheck(t, h, "GET", "h", "/x", [2]string{"x-api-key", "k"})
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "overloaded") {
		t.Errorf("HTTP check while full: %d %q, want 503 overloaded", status, body)
	}
	<-done
}

// TestHTTPDrain: checks in flight on the HTTP listener when the drain
// starts are answered; the listener then closes.
func TestHTTPDrain(t *testing.T) {
	h := start(t, httpConfig(t, ""))
	h.svc.live.Store(slowPipeline(t, 400*time.Millisecond))
	addr := h.svc.httpLis.Addr().String()
	const n = 16
	errs := make(chan error, n)
	var started sync.WaitGroup
	for range n {
		started.Add(1)
		go func() {
			started.Done()
			req, _ := http.NewRequest("GET", "http://"+addr+"/authz/x", nil)
			req.Header.Set("x-api-key", "k")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			errs <- err
		}()
	}
	started.Wait()
	time.Sleep(100 * time.Millisecond) // all checks are inside the verifier
	h.cancel()
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("in-flight HTTP check failed during drain: %v", err)
		}
	}
	if err := <-h.done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	h.done <- nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/authz/x", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Errorf("the HTTP listener still answers after the drain: %d", resp.StatusCode)
	}
}
