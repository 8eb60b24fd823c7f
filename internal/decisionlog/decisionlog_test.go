package decisionlog

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/ext-authz/ext-authz/internal/logcapture"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// jsonLines parses every line the log sink holds as a JSON object.
func jsonLines(t *testing.T, s *logcapture.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range strings.Lines(s.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestClip(t *testing.T) {
	for _, c := range []struct {
		give string
		n    int
		want string
	}{
		{"short", 8, "short"},
		{"exactly8", 8, "exactly8"},
		{"ninechars", 8, "ninec..."},
		{"ééééé", 8, "éé..."}, // 10 bytes; cut at 5 would split the third é
		{"aéééé", 8, "aéé..."},
	} {
		if got := Clip(c.give, c.n); got != c.want || len(got) > c.n {
			t.Errorf("Clip(%q, %d) = %q, want %q", c.give, c.n, got, c.want)
		}
	}
}

func TestSampled(t *testing.T) {
	for _, c := range []struct {
		give              Config
		allowed, denied   bool // whether they are always logged
		allowed0, denied0 bool // whether they are never logged
	}{
		{give: Config{Denials: "all"}, denied: true, allowed0: true},
		{give: Config{Denials: "none", AllowSampleRate: 1}, allowed: true, denied0: true},
		{give: Config{Denials: "sampled", AllowSampleRate: 1}, allowed: true, denied: true},
		{give: Config{Denials: "sampled"}, allowed0: true, denied0: true},
	} {
		d := New(slog.New(slog.DiscardHandler), c.give, nil)
		for range 100 {
			if a := d.Sampled(true); (c.allowed && !a) || (c.allowed0 && a) {
				t.Errorf("%+v: allowed sampled = %v", c.give, a)
			}
			if x := d.Sampled(false); (c.denied && !x) || (c.denied0 && x) {
				t.Errorf("%+v: denied sampled = %v", c.give, x)
			}
		}
	}
}

func TestWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf logcapture.Buffer
		reg := prometheus.NewRegistry()
		d := New(slog.New(slog.NewJSONHandler(&buf, nil)), Config{Denials: "all", MaxPerSecond: 2}, reg)
		long := "/api/" + strings.Repeat("é", 2000)
		e := &Entry{DecisionID: "d1", Result: "PermissionDenied", Path: long, Host: "h", Method: "GET",
			Subject: "alice@example.com", Authenticator: "keys", Identified: true, Latency: 1500 * time.Microsecond,
			Plan: "pro", RateLimitPolicy: `"pro/api/second";q=100;w=1`}
		for range 5 {
			d.Write(context.Background(), e)
		}
		lines := jsonLines(t, &buf)
		if len(lines) != 2 || testutil.ToFloat64(d.dropped) != 3 {
			t.Fatalf("%d lines, %v dropped; want 2, 3 (the cap)", len(lines), testutil.ToFloat64(d.dropped))
		}
		l := lines[0]
		if p := l["path"].(string); len(p) > MaxPath || !strings.HasSuffix(p, "...") || l["path_bytes"] != float64(len(long)) {
			t.Errorf("path %d bytes, path_bytes %v", len(p), l["path_bytes"])
		}
		if l["subject_hash"] != SubjectHash("alice@example.com") || strings.Contains(buf.String(), "alice") {
			t.Errorf("the subject is not pseudonymised: %v", l)
		}
		if l["latency_us"] != float64(1500) || l["authenticator"] != "keys" || l["plan"] != "pro" || l["rate_limit_policy"] != `"pro/api/second";q=100;w=1` {
			t.Errorf("line = %v", l)
		}
		time.Sleep(time.Second) // a new second: the cap resets
		d.Write(context.Background(), &Entry{DecisionID: "d2"})
		if got := jsonLines(t, &buf); len(got) != 3 || got[2]["subject_hash"] != nil || got[2]["plan"] != nil || got[2]["rate_limit_policy"] != nil {
			t.Errorf("after a second: %d lines, last %v", len(got), got[len(got)-1])
		}
	})
}
