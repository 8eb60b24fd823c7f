package httpauthz_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/httpauthz"
	"github.com/ext-authz/ext-authz/authz/transport"
	"github.com/ext-authz/ext-authz/internal/admission"
)

func TestRequestFromHTTP(t *testing.T) {
	tests := []struct {
		name    string
		give    func() *http.Request
		prefix  string
		wantOK  bool
		want    authz.Request
		headers map[string]string // a subset of the wanted headers
	}{
		{
			name: "prefix stripped, raw path and query kept",
			give: func() *http.Request {
				r := httptest.NewRequest("POST", "/check/api/%2e%2e/admin%2Fx?a=1&b=%20", nil)
				r.Host = "api.example.com"
				r.Header.Set("X-Request-Id", "req-9")
				r.Header.Set("X-Forwarded-Proto", "https")
				return r
			},
			prefix: "/check",
			wantOK: true,
			want: authz.Request{Method: "POST", Host: "api.example.com", Path: "/api/%2e%2e/admin%2Fx", Query: "a=1&b=%20",
				Scheme: "https", RequestID: "req-9"},
			headers: map[string]string{":path": "/api/%2e%2e/admin%2Fx?a=1&b=%20", ":method": "POST", ":authority": "api.example.com", ":scheme": "https"},
		},
		{
			name: "without the prefix: not from the gateway",
			give: func() *http.Request {
				return httptest.NewRequest("GET", "/api/x", nil)
			},
			prefix: "/check",
			wantOK: false,
		},
		{
			name: "prefix is a string, not a path segment",
			give: func() *http.Request {
				return httptest.NewRequest("GET", "/checkers/x", nil)
			},
			prefix: "/check",
			wantOK: false,
		},
		{
			name: "asterisk-form after the prefix",
			give: func() *http.Request {
				r := httptest.NewRequest("OPTIONS", "/check", nil)
				r.RequestURI = "/check*"
				return r
			},
			prefix: "/check",
			wantOK: false,
		},
		{
			name: "repeated headers joined as Envoy joins them, peer is the last forwarded address",
			give: func() *http.Request {
				r := httptest.NewRequest("GET", "/x", nil)
				r.Header.Add("Cookie", "a=1")
				r.Header.Add("Cookie", "b=2")
				r.Header.Add("X-Forwarded-For", "203.0.113.9, 10.0.0.1")
				r.Header.Add("X-Forwarded-For", "10.1.2.3")
				r.Header.Set("X-Forwarded-Proto", "gopher")
				r.Header.Set("Content-Length", "12")
				return r
			},
			wantOK:  true,
			want:    authz.Request{Method: "GET", Host: "example.com", Path: "/x", PeerAddress: "10.1.2.3"},
			headers: map[string]string{"cookie": "a=1; b=2", "x-forwarded-for": "203.0.113.9, 10.0.0.1,10.1.2.3", "content-length": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := httpauthz.RequestFromHTTP(tt.give(), tt.prefix)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			for k, v := range tt.headers {
				if got.Headers[k] != v {
					t.Errorf("header %q = %q, want %q", k, got.Headers[k], v)
				}
			}
			got.Headers = nil
			if got.Method != tt.want.Method || got.Host != tt.want.Host || got.Path != tt.want.Path || got.Query != tt.want.Query ||
				got.Scheme != tt.want.Scheme || got.PeerAddress != tt.want.PeerAddress || got.RequestID != tt.want.RequestID {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestMissingPrefixIsBadRequest(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := transport.NewMetrics(reg)
	h := httpauthz.New(testPipeline(t), httpauthz.Options{PathPrefix: "/check", Core: transport.Options{Metrics: m}})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
	if w.Code != 400 || !strings.Contains(w.Body.String(), `"reason":"path_prefix_missing"`) {
		t.Errorf("got %d %s", w.Code, w.Body)
	}
	if n := metricDecisions(t, reg, "bad_request", "path_prefix_missing"); n != 1 {
		t.Errorf("decisions_total{bad_request,path_prefix_missing} = %v, want 1", n)
	}
}

// metricDecisions reads one ext_authz_decisions_total series.
func metricDecisions(t *testing.T, reg *prometheus.Registry, result, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ext_authz_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["result"] == result && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// blocking is a Decider that holds every call until released.
type blocking struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blocking) Decide(ctx context.Context, _ *authz.Request) authz.Decision {
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return authz.Decision{Code: authz.OK}
}

// TestOverloadRefusedWith503: with every turn taken and no queue, a check
// is refused at once with a 503, which Envoy answers with status_on_error
// (fail closed), like the gRPC adapter's RESOURCE_EXHAUSTED.
func TestOverloadRefusedWith503(t *testing.T) {
	ac := admission.New(admission.Config{MaxInFlight: 1, MaxQueued: -1, MaxQueueWait: time.Second}, nil)
	b := &blocking{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(httpauthz.New(b, httpauthz.Options{Admission: ac}))
	defer srv.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	var first int
	go func() {
		defer wg.Done()
		resp, err := srv.Client().Get(srv.URL + "/a")
		if err == nil {
			first = resp.StatusCode
			_ = resp.Body.Close()
		}
	}()
	<-b.entered
	resp, err := srv.Client().Get(srv.URL + "/b")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "overloaded") {
		t.Errorf("second check: %d %q, want 503 overloaded", resp.StatusCode, body)
	}
	if got := ac.Rejected(admission.ReasonQueueFull); got != 1 {
		t.Errorf("rejected{queue_full} = %v, want 1", got)
	}
	close(b.release)
	wg.Wait()
	if first != 200 {
		t.Errorf("first check: %d, want 200", first)
	}
	if ac.InFlight() != 0 {
		t.Errorf("%d turns still taken", ac.InFlight())
	}
}

// TestCallDeadline: a check that takes longer than the call deadline is
// decided under a context that has ended, so the Decider fails closed.
func TestCallDeadline(t *testing.T) {
	var sawDeadline bool
	d := deciderFunc(func(ctx context.Context, _ *authz.Request) authz.Decision {
		_, sawDeadline = ctx.Deadline()
		<-ctx.Done()
		return authz.Decision{Code: authz.Unavailable, Reason: "timeout"}
	})
	h := httpauthz.New(d, httpauthz.Options{CallDeadline: 20 * time.Millisecond})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
	if !sawDeadline || w.Code != 503 {
		t.Errorf("deadline set %v, status %d; want true, 503", sawDeadline, w.Code)
	}
}

type deciderFunc func(ctx context.Context, r *authz.Request) authz.Decision

func (f deciderFunc) Decide(ctx context.Context, r *authz.Request) authz.Decision { return f(ctx, r) }

// TestPanicIsServerError: a panic in the pipeline is a 500 (Envoy:
// status_on_error, fail closed), and the server goes on.
func TestPanicIsServerError(t *testing.T) {
	d := deciderFunc(func(context.Context, *authz.Request) authz.Decision { panic("boom") })
	h := httpauthz.New(d, httpauthz.Options{Logger: discardLogger()})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
	if w.Code != 500 {
		t.Errorf("status %d, want 500", w.Code)
	}
}

// TestRenderAllow: identity headers for the upstream, removals in
// x-envoy-auth-headers-to-remove, client headers; no body.
func TestRenderAllow(t *testing.T) {
	w := httptest.NewRecorder()
	httpauthz.Render(w, &authz.Decision{Code: authz.OK,
		UpstreamHeaders: []authz.Header{{Name: "x-auth-subject", Value: "alice\xff"}},
		RemoveHeaders:   []string{"x-api-key", "x-auth-app-id"},
		ResponseHeaders: []authz.Header{{Name: "x-ratelimit-remaining", Value: "4"}},
	}, "req-1")
	if w.Code != 200 || w.Body.Len() != 0 {
		t.Errorf("got %d %q", w.Code, w.Body)
	}
	want := map[string]string{"x-auth-subject": "alice\uFFFD", httpauthz.HeadersToRemove: "x-api-key,x-auth-app-id", "x-ratelimit-remaining": "4"}
	for k, v := range want {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
