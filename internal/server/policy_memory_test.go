package server

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// manyRules is n allow rules, one per host and path, in the config file's
// rule syntax (inserted before baseConfig's api rule).
func manyRules(n int, tag string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "    - name: %s%d\n      match: {hosts: [svc%d.example.com], path: {prefix: /%s/%d/}, methods: [GET]}\n      action: allow\n", tag, i, i, tag, i)
	}
	return b.String()
}

// TestServiceKeepsNoPolicyTree: after start-up and after a reload, the
// service keeps neither the file's YAML node tree nor the policy's rules
// as configured; the compiled pipeline alone decides, deep rules included.
func TestServiceKeepsNoPolicyTree(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, servicetest.BaseConfig(keys, manyRules(2000, "a")))
	kept := func() (tree bool, rules int) {
		h.svc.mu.Lock()
		defer h.svc.mu.Unlock()
		return h.svc.cfg().HoldsSource(), len(h.svc.cfg().Policy.Rules)
	}
	if tree, rules := kept(); tree || rules != 0 {
		t.Fatalf("after start-up the service keeps the node tree: %v, %d configured rules", tree, rules)
	}
	if c := h.check(t, "GET", "svc1998.example.com", "/a/1998/x").GetStatus().GetCode(); c != 0 {
		t.Fatalf("rule a1998: status %d, want OK", c)
	}

	servicetest.WriteFile(t, h.path, servicetest.BaseConfig(keys, manyRules(2000, "b")))
	if err := h.svc.reload("test"); err != nil {
		t.Fatal(err)
	}
	if tree, rules := kept(); tree || rules != 0 {
		t.Fatalf("after a reload the service keeps the node tree: %v, %d configured rules", tree, rules)
	}
	if c := h.check(t, "GET", "svc1998.example.com", "/b/1998/x").GetStatus().GetCode(); c != 0 {
		t.Fatalf("reloaded rule b1998: status %d, want OK", c)
	}
	if c := h.check(t, "GET", "svc1998.example.com", "/a/1998/x").GetDeniedResponse().GetStatus().GetCode(); c != 403 {
		t.Fatalf("rule a1998 after the reload removed it: %d, want 403", c)
	}
}
