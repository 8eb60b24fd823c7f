package server

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// The lifecycle tests run the real binary under sustained load and send it
// the signals Kubernetes sends: SIGTERM on a rollout, SIGHUP (or a
// ConfigMap update) on a config change.

func lifecycleConns(t *testing.T, addr string, n int) []authv3.AuthorizationClient {
	t.Helper()
	out := make([]authv3.AuthorizationClient, n)
	for i := range out {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		out[i] = authv3.NewAuthorizationClient(c)
	}
	return out
}

func apiCheck(key string) *authv3.CheckRequest {
	return extauthz.BuildCheckRequest(extauthz.HTTPRequest{
		Method: "GET", Host: "shop.example.com", Path: "/api/orders", Headers: [][2]string{{"x-api-key", key}},
	})
}

// TestShutdownUnderLoad: SIGTERM while 32 callers on 4 connections keep
// Checks in flight. Health turns NOT_SERVING at once; every Check the
// server accepted is answered correctly (none fails, none is cut); the only
// errors are calls refused after the listener closed, which Envoy sends to
// another replica; the process exits 0 within drain_delay + drain_timeout.
func TestShutdownUnderLoad(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	const drainDelay = 500 * time.Millisecond
	cfg := servicetest.BaseConfig(servicetest.KeysFile(t, dir), "")
	cfg = strings.Replace(cfg, "drain_delay: 100ms", "drain_delay: 500ms", 1)
	cfg = strings.Replace(cfg, "reload_interval: 50ms", "reload_interval: -1s", 1)
	servicetest.WriteFile(t, cfgPath, cfg)
	p := servicetest.StartBinary(t, cfgPath)
	p.WaitLine(t, "ready")

	clients := lifecycleConns(t, p.GRPCAddr, 4)
	runs := make([]*loadRun, len(clients))
	for i, c := range clients {
		runs[i] = startLoad(t, c, loadOptions{Workers: 8}, func(int, int) *authv3.CheckRequest { return apiCheck(servicetest.KeyAlice) })
	}
	time.Sleep(phase(time.Second))
	if runs[0].Count() == 0 {
		t.Fatal("no Check completed before SIGTERM")
	}

	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthgrpc.NewHealthClient(conn)
	if resp, err := hc.Check(context.Background(), &healthgrpc.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
		t.Fatalf("health before SIGTERM: %v %v", resp, err)
	}

	sig := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Health answers NOT_SERVING during the drain delay, while Checks are
	// still served, so the gateway stops sending before the port closes.
	waitFor(t, func() bool {
		resp, err := hc.Check(context.Background(), &healthgrpc.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthgrpc.HealthCheckResponse_NOT_SERVING
	}, "health NOT_SERVING after SIGTERM")
	notServing := time.Since(sig)

	select {
	case err := <-p.Done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(drainDelay + 5*time.Second + 5*time.Second):
		t.Fatal("still running long after drain_delay + drain_timeout")
	}
	exited := time.Since(sig)
	var rs []callResult
	for _, l := range runs {
		rs = append(rs, l.Stop()...)
	}

	before := between(rs, time.Time{}, sig.Add(drainDelay))
	after := between(rs, sig.Add(drainDelay), time.Now())
	t.Logf("health NOT_SERVING %v after SIGTERM; exit 0 after %v", notServing.Round(time.Millisecond), exited.Round(time.Millisecond))
	t.Logf("started before the drain delay ended: %v", summarize(before))
	t.Logf("started after: %v", summarize(after))
	for _, r := range before {
		if r.Err != nil || r.HTTP != 200 {
			t.Errorf("a Check started %v after SIGTERM (inside the drain delay) answered %s", r.Start.Sub(sig), outcome(r))
		}
	}
	for _, r := range after {
		// After the drain delay the listener closes: new calls are refused
		// (Unavailable), never accepted and then dropped.
		if o := outcome(r); o != "http 200" && o != "grpc Unavailable" {
			t.Errorf("a Check started %v after SIGTERM answered %s", r.Start.Sub(sig), o)
		}
	}
	if n := len(between(rs, sig, sig.Add(drainDelay))); n == 0 {
		t.Error("no Check ran during the drain delay: the test did not shut down under load")
	}
}

// TestReloadUnderLoadBinary: the real binary under sustained load gets a
// broken config file and SIGHUP, then a good one. The broken file is
// rejected and the old policy keeps answering; the good one takes effect;
// not one Check fails or is answered wrongly on the way.
func TestReloadUnderLoadBinary(t *testing.T) {
	dir := t.TempDir()
	keys := servicetest.KeysFile(t, dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	noPoll := func(c string) string { return strings.Replace(c, "reload_interval: 50ms", "reload_interval: -1s", 1) }
	servicetest.WriteFile(t, cfgPath, noPoll(servicetest.BaseConfig(keys, "")))
	p := servicetest.StartBinary(t, cfgPath)
	p.WaitLine(t, "ready")

	status := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: "/status"})
	clients := lifecycleConns(t, p.GRPCAddr, 2)
	var runs []*loadRun
	for _, c := range clients {
		runs = append(runs, startLoad(t, c, loadOptions{Workers: 8}, func(w, _ int) *authv3.CheckRequest {
			if w%2 == 0 {
				return status
			}
			return apiCheck(servicetest.KeyAlice)
		}))
	}
	time.Sleep(phase(500 * time.Millisecond))

	broken := strings.Replace(noPoll(servicetest.BaseConfig(keys, "")), "action: authenticate", "action: authenticat", 1)
	servicetest.WriteFile(t, cfgPath, broken)
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rejected := p.WaitLine(t, "config reload rejected")
	if msg, _ := rejected["error"].(string); !strings.Contains(msg, "config.yaml:") || !strings.Contains(msg, "action") {
		t.Errorf("rejection does not name the file and field: %q", msg)
	}
	time.Sleep(phase(500 * time.Millisecond))

	goodWritten := time.Now()
	servicetest.WriteFile(t, cfgPath, noPoll(servicetest.BaseConfig(keys, "    - name: status\n      match: {path: {exact: /status}}\n      action: allow\n")))
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, "config reloaded")
	reloaded := time.Now()
	time.Sleep(phase(500 * time.Millisecond))
	var rs []callResult
	for _, l := range runs {
		rs = append(rs, l.Stop()...)
	}
	t.Logf("reload under load: %v", summarize(rs))

	for _, r := range rs {
		if r.Err != nil {
			t.Fatalf("a Check failed during reloads: %v", r.Err)
		}
		if r.Worker%2 == 1 && r.HTTP != 200 {
			t.Fatalf("an authenticated Check answered %d during reloads", r.HTTP)
		}
	}
	// /status: denied (no rule) until the good file, allowed once it is in.
	var statusBefore, statusAfter []callResult
	for _, r := range rs {
		if r.Worker%2 == 0 {
			switch {
			case r.Start.Add(r.Took).Before(goodWritten):
				statusBefore = append(statusBefore, r)
			case r.Start.After(reloaded):
				statusAfter = append(statusAfter, r)
			}
		}
	}
	if len(statusBefore) == 0 || len(statusAfter) == 0 {
		t.Fatalf("too few /status calls around the reload: %d before, %d after", len(statusBefore), len(statusAfter))
	}
	for _, r := range statusBefore {
		if r.HTTP != 403 {
			t.Fatalf("/status before the good reload answered %d, want 403 (the broken file must not apply)", r.HTTP)
		}
	}
	for _, r := range statusAfter {
		if r.HTTP != 200 {
			t.Fatalf("/status after the good reload answered %d, want 200", r.HTTP)
		}
	}
}
