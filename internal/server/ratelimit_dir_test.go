package server

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	pb_struct "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// configMapDir lays out a directory as Kubernetes mounts a ConfigMap:
// every key a symlink to ..data/KEY, ..data a symlink to a hidden
// timestamped directory, and an update writes a new one and swaps ..data
// with a rename (atomic), then adds or removes the keys' symlinks.
type configMapDir struct {
	t       *testing.T
	dir     string
	version int
	keys    map[string]bool
}

func newConfigMapDir(t *testing.T, files map[string]string) *configMapDir {
	c := &configMapDir{t: t, dir: t.TempDir(), keys: map[string]bool{}}
	c.update(files)
	return c
}

// update makes files the ConfigMap's content.
func (c *configMapDir) update(files map[string]string) {
	t := c.t
	t.Helper()
	c.version++
	data := "..v" + strconv.Itoa(c.version)
	if err := os.Mkdir(filepath.Join(c.dir, data), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		servicetest.WriteFile(t, filepath.Join(c.dir, data, name), body)
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(data, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if !c.keys[name] {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(c.dir, name)); err != nil {
				t.Fatal(err)
			}
			c.keys[name] = true
		}
	}
	for name := range c.keys {
		if _, ok := files[name]; !ok {
			if err := os.Remove(filepath.Join(c.dir, name)); err != nil {
				t.Fatal(err)
			}
			delete(c.keys, name)
		}
	}
}

func perKeyLimit(domain string, n int) string {
	return "domain: " + domain + "\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: " + strconv.Itoa(n) + "}\n"
}

// TestRateLimitDirectoryPickedUpWithoutSignal: files added to, changed in
// and removed from a rate-limit directory mounted like a ConfigMap are
// picked up by the running service's reload loop, without SIGHUP, as the
// reference's runtime watcher does; each is content-checked like the
// config (a broken file or an empty directory is rejected and the limits
// in force stay); counters are kept across reloads.
func TestRateLimitDirectoryPickedUpWithoutSignal(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	cm := newConfigMapDir(t, map[string]string{"alpha.yaml": perKeyLimit("alpha", 1)})
	h := start(t, servicetest.BaseConfig(keys, "")+rateLimitSection(cm.dir, "memory", ""))
	rls := rlsv3.NewRateLimitServiceClient(h.conn)
	call := func(domain string) *rlsv3.RateLimitResponse_DescriptorStatus {
		t.Helper()
		out, err := rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*pb_struct.RateLimitDescriptor{
			{Entries: []*pb_struct.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return out.GetStatuses()[0]
	}
	limitOf := func(domain string) uint32 { return call(domain).GetCurrentLimit().GetRequestsPerUnit() }
	rejected := func() int { return strings.Count(h.logs.String(), "config reload rejected") }

	if st := call("alpha"); st.GetCode() != rlsv3.RateLimitResponse_OK || st.GetCurrentLimit().GetRequestsPerUnit() != 1 {
		t.Fatalf("alpha at start: %v", st)
	}
	if st := call("beta"); st.GetCurrentLimit() != nil {
		t.Fatalf("beta limited before its file exists: %v", st)
	}

	// Added: beta's file appears (beta has 0 left after the probe hit).
	cm.update(map[string]string{"alpha.yaml": perKeyLimit("alpha", 1), "beta.yaml": perKeyLimit("beta", 7)})
	waitFor(t, func() bool { return limitOf("beta") == 7 }, "the added file's domain to apply")
	if st := call("alpha"); st.GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("alpha's counter was not kept across the reload: %v", st)
	}

	// Changed: alpha raised to 10; its earlier hits are kept, so fewer
	// than 8 are left after this one.
	cm.update(map[string]string{"alpha.yaml": perKeyLimit("alpha", 10), "beta.yaml": perKeyLimit("beta", 7)})
	waitFor(t, func() bool { return limitOf("alpha") == 10 }, "the changed file to apply")
	if st := call("alpha"); st.GetCode() != rlsv3.RateLimitResponse_OK || st.GetLimitRemaining() >= 8 {
		t.Errorf("alpha after raising its limit: %v, want OK with its earlier hits still counted", st)
	}

	// Removed: beta's file goes; beta answers OK with no limit again.
	cm.update(map[string]string{"alpha.yaml": perKeyLimit("alpha", 10)})
	waitFor(t, func() bool { return call("beta").GetCurrentLimit() == nil }, "the removed file's domain to stop applying")

	// A broken file added is rejected, named, and alpha keeps its limit.
	before := rejected()
	cm.update(map[string]string{"alpha.yaml": perKeyLimit("alpha", 10), "gamma.yaml": "domain: gamma\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n"})
	waitFor(t, func() bool { return rejected() > before }, "the broken file to be rejected")
	if logs := h.logs.String(); !strings.Contains(logs, "gamma.yaml") || !strings.Contains(logs, "fortnight") {
		t.Errorf("the rejection does not name the file and the bad unit:\n%s", logs)
	}
	if limitOf("alpha") != 10 || limitOf("gamma") != 0 {
		t.Error("a rejected directory changed the limits in force")
	}

	// Emptied: no file left is rejected too (a ConfigMap emptied by
	// mistake does not lift every limit); remove the directory from
	// rate_limit.files to drop them.
	before = rejected()
	cm.update(map[string]string{})
	waitFor(t, func() bool { return rejected() > before }, "the emptied directory to be rejected")
	if limitOf("alpha") != 10 {
		t.Error("an emptied directory lifted the limits in force")
	}

	// Fixed again: picked up.
	cm.update(map[string]string{"alpha.yaml": perKeyLimit("alpha", 20)})
	waitFor(t, func() bool { return limitOf("alpha") == 20 }, "a good directory after rejected ones to apply")
}
