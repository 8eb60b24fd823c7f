package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/logcapture"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/internal/telemetry"
	"github.com/ext-authz/ext-authz/tokens"
)

// compileFile compiles the config file at path as check-config does, and
// releases what it built.
func compileFile(path string) error {
	cfg, err := generation.Load(path, func(string) string { return "" })
	if err != nil {
		return err
	}
	g, err := generation.Compile(&generation.Env{Pool: pool.New(pool.Options{})}, cfg)
	if err != nil {
		return cfg.Annotate(err)
	}
	return g.Release()
}

type harness struct {
	svc    *Server
	conn   *grpc.ClientConn
	client authv3.AuthorizationClient
	admin  string
	path   string
	logs   *logcapture.Buffer
	cancel context.CancelFunc
	done   chan error
}

// start runs the real service from a config file, on free ports, connects
// the generated client to it as Envoy would, and waits until it is SERVING.
func start(t *testing.T, cfgText string) *harness {
	t.Helper()
	h := startUnready(t, cfgText)
	h.waitServing(t)
	return h
}

// startUnready is start without waiting for SERVING, for tests of a
// service that is not ready yet.
func startUnready(t *testing.T, cfgText string) *harness {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := generation.Load(path, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logcapture.Buffer{}
	tel, err := telemetry.New(cfg.Telemetry, logs, telemetry.Options{CredentialKeys: cfg.CredentialKeys()})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(path, cfg, tel, Options{Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{svc: svc, admin: "http://" + svc.adminLis.Addr().String(), path: path, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- svc.Serve(ctx) }()
	h.conn, err = grpc.NewClient(svc.grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.client = authv3.NewAuthorizationClient(h.conn)
	t.Cleanup(func() {
		h.stop(t)
		_ = svc.Close()
		for _, secret := range []string{servicetest.KeyAlice, servicetest.KeyAdmin} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a credential appears in the logs:\n%s", logs.String())
			}
		}
	})
	return h
}

func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
		h.done <- nil // later stops see a clean exit
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	_ = h.conn.Close()
}

func (h *harness) waitServing(t *testing.T) {
	t.Helper()
	hc := healthgrpc.NewHealthClient(h.conn)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := hc.Check(context.Background(), &healthgrpc.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err == nil && resp.GetStatus() == healthgrpc.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not SERVING after 5s: %v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) check(t *testing.T, method, host, path string, headers ...[2]string) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := h.client.Check(ctx, extauthz.BuildCheckRequest(extauthz.HTTPRequest{
		Method: method, Host: host, Path: path, Headers: headers, RequestID: "rid-1",
	}))
	if err != nil {
		t.Fatalf("Check %s %s%s: %v", method, host, path, err)
	}
	return resp
}

func upstreamHeaders(resp *authv3.CheckResponse) map[string]string {
	m := map[string]string{}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		m[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return m
}

func deniedHeader(resp *authv3.CheckResponse, name string) []string {
	var out []string
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			out = append(out, h.GetHeader().GetValue())
		}
	}
	return out
}

func TestEndToEnd(t *testing.T) {
	h := start(t, servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), ""))

	t.Run("allow with identity, forged headers overwritten or removed", func(t *testing.T) {
		resp := h.check(t, "GET", "shop.example.com", "/api/orders?page=1",
			[2]string{"x-api-key", servicetest.KeyAlice}, [2]string{"x-auth-subject", "admin"}, [2]string{"X-Auth-Team", "platform"}, [2]string{"x-auth-app-id", "forged"})
		if resp.GetStatus().GetCode() != 0 {
			t.Fatalf("denied: %v", resp)
		}
		got := upstreamHeaders(resp)
		if got["x-auth-subject"] != "alice" || got["x-auth-team"] != "payments" || got["x-auth-method"] != "api-key" {
			t.Errorf("upstream headers = %v", got)
		}
		removed := resp.GetOkResponse().GetHeadersToRemove()
		for _, n := range []string{"x-auth-app-id", "x-api-key"} {
			if !contains(removed, n) {
				t.Errorf("%s not removed: %v", n, removed)
			}
		}
		md := resp.GetDynamicMetadata().GetFields()
		if md["rule"].GetStringValue() != "api" || md["subject"].GetStringValue() != "alice" || md["decision_id"].GetStringValue() == "" {
			t.Errorf("dynamic metadata = %v", md)
		}
	})

	t.Run("401 with challenge and JSON body", func(t *testing.T) {
		resp := h.check(t, "GET", "shop.example.com", "/api/orders", [2]string{"x-api-key", "wrong-key"})
		if c := resp.GetDeniedResponse().GetStatus().GetCode(); c != 401 {
			t.Fatalf("status %v, want 401", c)
		}
		if resp.GetStatus().GetCode() != int32(codes.Unauthenticated) {
			t.Errorf("grpc status %v", resp.GetStatus())
		}
		if got := deniedHeader(resp, "www-authenticate"); len(got) != 1 || got[0] != `ApiKey realm="e2e", error="invalid_token", error_description="unknown_credential"` {
			t.Errorf("www-authenticate = %q", got)
		}
		var body map[string]string
		if err := json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body); err != nil {
			t.Fatalf("body %q: %v", resp.GetDeniedResponse().GetBody(), err)
		}
		if body["error"] != "unauthenticated" || body["reason"] != "unknown_credential" || body["request_id"] != "rid-1" {
			t.Errorf("body = %v", body)
		}
		if strings.Contains(resp.String(), "wrong-key") {
			t.Error("the credential is echoed in the response")
		}
	})

	t.Run("403 when authenticated but not allowed", func(t *testing.T) {
		resp := h.check(t, "GET", "shop.example.com", "/admin/users", [2]string{"x-api-key", servicetest.KeyAlice})
		if c := resp.GetDeniedResponse().GetStatus().GetCode(); c != 403 {
			t.Fatalf("status %v, want 403", c)
		}
		if len(deniedHeader(resp, "www-authenticate")) != 0 {
			t.Error("403 carries a challenge")
		}
	})

	t.Run("anonymous health removes identity headers", func(t *testing.T) {
		resp := h.check(t, "GET", "anything", "/healthz", [2]string{"x-auth-subject", "admin"})
		if resp.GetStatus().GetCode() != 0 || !contains(resp.GetOkResponse().GetHeadersToRemove(), "x-auth-subject") {
			t.Fatalf("resp = %v", resp)
		}
	})

	t.Run("health, readiness, reflection", func(t *testing.T) {
		for _, svcName := range healthServices {
			r, err := healthgrpc.NewHealthClient(h.conn).Check(context.Background(), &healthgrpc.HealthCheckRequest{Service: svcName})
			if err != nil || r.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
				t.Errorf("health %q = %v, %v", svcName, r, err)
			}
		}
		for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/debug/pprof/": 404} {
			resp, err := http.Get(h.admin + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
			}
		}
		stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range r.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !contains(names, "envoy.service.auth.v3.Authorization") {
			t.Errorf("reflection lists %v", names)
		}
	})

	t.Run("malformed requests get a deterministic 400", func(t *testing.T) {
		for _, req := range []*authv3.CheckRequest{
			{},
			{Attributes: &authv3.AttributeContext{}},
			{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}},
		} {
			resp, err := h.client.Check(context.Background(), req)
			if err != nil {
				t.Fatalf("Check(%v): %v", req, err)
			}
			if c := resp.GetDeniedResponse().GetStatus().GetCode(); c != 400 {
				t.Errorf("Check(%v) status %v, want 400", req, c)
			}
		}
	})

	t.Run("oversized request is refused by gRPC, server stays up", func(t *testing.T) {
		huge := strings.Repeat("a", 2<<20)
		_, err := h.client.Check(context.Background(), extauthz.BuildCheckRequest(extauthz.HTTPRequest{
			Method: "GET", Host: "h", Path: "/api/x", Headers: [][2]string{{"x-big", huge}},
		}))
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("oversized Check: %v, want ResourceExhausted", err)
		}
		if resp := h.check(t, "GET", "x", "/healthz"); resp.GetStatus().GetCode() != 0 {
			t.Fatal("server unhealthy after oversized request")
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// slowPipeline swaps in a pipeline whose verifier takes d, so Checks stay
// in flight long enough to overlap a drain or a reload.
func slowPipeline(t *testing.T, d time.Duration) *authz.Pipeline {
	t.Helper()
	slow := authz.VerifierFunc(func(ctx context.Context, cred string) (tokens.Principal, error) {
		select {
		case <-time.After(d):
			return tokens.Principal{Subject: "slow", Method: tokens.MethodAPIKey}, nil
		case <-ctx.Done():
			return tokens.Principal{}, ctx.Err()
		}
	})
	p, err := authz.NewPipeline(authz.Config{Rules: []authz.RuleConfig{{Name: "slow", Action: authz.ActionAuthenticate, Authenticators: []string{"slow"}}}},
		[]*authz.Authenticator{{Name: "slow", Source: authz.CredentialSource{Header: "x-api-key"}, Verifier: slow}}, authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDrainCompletesInFlightChecks(t *testing.T) {
	h := start(t, servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), ""))
	h.svc.live.Store(slowPipeline(t, 400*time.Millisecond))

	const n = 32
	errs := make(chan error, n)
	var started sync.WaitGroup
	for range n {
		started.Add(1)
		go func() {
			started.Done()
			resp, err := h.client.Check(context.Background(), extauthz.BuildCheckRequest(extauthz.HTTPRequest{
				Method: "GET", Host: "h", Path: "/x", Headers: [][2]string{{"x-api-key", "k"}},
			}))
			if err == nil && resp.GetStatus().GetCode() != 0 {
				err = fmt.Errorf("denied: %v", resp.GetStatus())
			}
			errs <- err
		}()
	}
	started.Wait()
	time.Sleep(100 * time.Millisecond) // all calls are now inside the verifier
	h.cancel()

	// During drain_delay, health says NOT_SERVING while calls continue.
	time.Sleep(50 * time.Millisecond)
	r, err := healthgrpc.NewHealthClient(h.conn).Check(context.Background(), &healthgrpc.HealthCheckRequest{})
	if err == nil && r.GetStatus() != healthgrpc.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health during drain = %v, want NOT_SERVING", r.GetStatus())
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("in-flight Check failed during drain: %v", err)
		}
	}
	if err := <-h.done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	h.done <- nil
}

func TestReload(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, servicetest.BaseConfig(keys, ""))
	if c := h.check(t, "GET", "x", "/status").GetDeniedResponse().GetStatus().GetCode(); c != 403 {
		t.Fatalf("before reload /status = %v, want 403", c)
	}

	publicStatus := "    - name: status\n      match: {path: {exact: /status}}\n      action: allow\n"
	servicetest.WriteFile(t, h.path, servicetest.BaseConfig(keys, publicStatus))
	waitFor(t, func() bool { return h.check(t, "GET", "x", "/status").GetStatus().GetCode() == 0 }, "good file picked up")

	// A broken file is rejected and the old policy keeps serving.
	servicetest.WriteFile(t, h.path, servicetest.BaseConfig(keys, publicStatus)+"    - name: broken\n      action: permit\n")
	waitFor(t, func() bool { return strings.Contains(h.logs.String(), "config reload rejected") }, "bad file rejected")
	if !strings.Contains(h.logs.String(), `rules[4].action: \"permit\" is not one of`) {
		t.Errorf("rejection does not name the field:\n%s", h.logs.String())
	}
	if h.check(t, "GET", "x", "/status").GetStatus().GetCode() != 0 {
		t.Fatal("old config stopped serving after a bad reload")
	}
	if err := h.svc.reload("test"); err == nil {
		t.Fatal("reload of a bad file succeeded")
	}
}

func TestReloadUnderLoadFailsNoCheck(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, servicetest.BaseConfig(keys, ""))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures, total int64
	var mu sync.Mutex
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := h.client.Check(context.Background(), extauthz.BuildCheckRequest(extauthz.HTTPRequest{
					Method: "GET", Host: "a.example.com", Path: "/api/x", Headers: [][2]string{{"x-api-key", servicetest.KeyAlice}},
				}))
				mu.Lock()
				total++
				if err != nil || resp.GetStatus().GetCode() != 0 {
					failures++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range 10 {
		extra := ""
		if i%2 == 0 {
			extra = fmt.Sprintf("    - name: r%d\n      match: {path: {exact: /r%d}}\n      action: allow\n", i, i)
		}
		if i == 5 {
			servicetest.WriteFile(t, h.path, "not: [valid")
		} else {
			servicetest.WriteFile(t, h.path, servicetest.BaseConfig(keys, extra))
		}
		if err := h.svc.reload("test"); (err != nil) != (i == 5) {
			t.Errorf("reload %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if failures != 0 || total == 0 {
		t.Fatalf("%d of %d Checks failed during reloads", failures, total)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
