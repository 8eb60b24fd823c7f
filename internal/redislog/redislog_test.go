package redislog

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/ext-authz/ext-authz/internal/logcapture"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRedisLoggerThrottles: go-redis logs every failed dial while Redis is
// down; one line per message kind per 10 s reaches the log, with the count
// of the ones held back.
func TestRedisLoggerThrottles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf logcapture.Buffer
		l := New(slog.New(slog.NewJSONHandler(&buf, nil)))
		ctx := context.Background()
		for range 500 {
			l.Printf(ctx, "redis: failed to dial after %d attempts: %v", 5, "connection refused")
			l.Printf(ctx, "redis: discarding bad PubSub connection: %v", "EOF")
			time.Sleep(time.Millisecond)
		}
		time.Sleep(Every)
		l.Printf(ctx, "redis: failed to dial after %d attempts: %v", 5, "connection refused")

		var lines []map[string]any
		for _, s := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(s), &m); err != nil {
				t.Fatalf("log line %q: %v", s, err)
			}
			lines = append(lines, m)
		}
		if len(lines) != 3 {
			t.Fatalf("%d lines, want 3 (one per message kind, then one after the interval):\n%s", len(lines), buf.String())
		}
		if got := lines[2]["suppressed"]; got != float64(499) {
			t.Errorf("suppressed = %v, want 499", got)
		}
		if !strings.Contains(lines[2]["message"].(string), "failed to dial") {
			t.Errorf("message = %v", lines[2]["message"])
		}
	})
}
