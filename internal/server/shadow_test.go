package server

import (
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// TestShadowRuleEndToEnd: over gRPC, a shadow rule never changes the
// answer, its would-be decisions are counted by rule, would-be result and
// enforced result, and a decision it disagrees with is logged with it
// even though allowed decisions are not sampled; a when requirement
// denies 403 condition_failed without echoing the claim.
func TestShadowRuleEndToEnd(t *testing.T) {
	extra := `    - name: admin-only-trial
      mode: shadow
      match: {path: {prefix: /api/}}
      action: authenticate
      authenticators: [keys]
      require: {scopes: [admin]}
    - name: team-orders
      match: {hosts: ["*.example.com"], path: {prefix: /orders/}}
      action: authenticate
      authenticators: [keys]
      when: ["principal.claims.team == request.headers['x-team']"]
`
	h := start(t, servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), extra))
	for range 2 {
		if resp := h.check(t, "GET", "shop.example.com", "/api/orders", [2]string{"x-api-key", servicetest.KeyAlice}); resp.GetStatus().GetCode() != 0 {
			t.Fatalf("alice on /api/: %v, want allowed (the shadow rule is not enforced)", resp)
		}
	}
	if resp := h.check(t, "GET", "shop.example.com", "/api/orders", [2]string{"x-api-key", servicetest.KeyAdmin}); resp.GetStatus().GetCode() != 0 {
		t.Fatalf("admin on /api/: %v", resp)
	}
	resp := h.check(t, "GET", "shop.example.com", "/orders/1", [2]string{"x-api-key", servicetest.KeyAlice}, [2]string{"x-team", "platform"})
	if d := resp.GetDeniedResponse(); d.GetStatus().GetCode() != 403 || !strings.Contains(d.GetBody(), `"reason":"condition_failed"`) || strings.Contains(d.GetBody(), "payments") {
		t.Fatalf("team mismatch: %v", resp)
	}
	if resp := h.check(t, "GET", "shop.example.com", "/orders/1", [2]string{"x-api-key", servicetest.KeyAlice}, [2]string{"x-team", "payments"}); resp.GetStatus().GetCode() != 0 {
		t.Fatalf("team match: %v", resp)
	}
	metrics := get(t, h.admin+"/metrics")
	for _, want := range []string{
		`ext_authz_shadow_decisions_total{enforced="ok",result="forbidden",rule="admin-only-trial"} 2`,
		`ext_authz_shadow_decisions_total{enforced="ok",result="ok",rule="admin-only-trial"} 1`,
		`ext_authz_decisions_total{reason="condition_failed",result="forbidden",rule="team-orders"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "shadow=admin-only-trial:forbidden:insufficient_scope") && !strings.Contains(logs, `"shadow":"admin-only-trial:forbidden:insufficient_scope"`) {
		t.Errorf("no decision log line with the disagreeing shadow decision:\n%s", logs)
	}
}
