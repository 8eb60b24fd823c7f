package ratelimit_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// TestReported: the headers describe the status envoyproxy/ratelimit
// reports (the last over an enforced limit, else the first with the fewest
// left); Retry-After is the longest wait among those over the limit.
func TestReported(t *testing.T) {
	minute := &ratelimit.Limit{Policy: "minute", Requests: 10, Unit: ratelimit.Minute}
	hour := &ratelimit.Limit{Policy: "hour", Requests: 100, Unit: ratelimit.Hour}
	second := &ratelimit.Limit{Policy: "second", Requests: 5, Unit: ratelimit.Second}
	shadow := &ratelimit.Limit{Policy: "shadow", Requests: 1, Unit: ratelimit.Minute, Shadow: true}
	unlimited := &ratelimit.Limit{Unlimited: true}
	over := func(lm *ratelimit.Limit, reset time.Duration) ratelimit.Status {
		return ratelimit.Status{Code: ratelimit.OverLimit, Limit: lm, ResetAfter: reset}
	}
	ok := func(lm *ratelimit.Limit, left uint32, reset time.Duration) ratelimit.Status {
		return ratelimit.Status{Code: ratelimit.OK, Limit: lm, Remaining: left, ResetAfter: reset}
	}
	tests := []struct {
		name        string
		give        []ratelimit.Status
		want        int
		wantHeaders string
	}{
		{"two over: the last, Retry-After the longest", []ratelimit.Status{over(hour, 3000*time.Second), over(second, 300*time.Millisecond)}, 1,
			`retry-after: 3000|x-ratelimit-limit: 5|x-ratelimit-remaining: 0|x-ratelimit-reset: 1`},
		{"three over, one ok between", []ratelimit.Status{over(second, time.Second), ok(minute, 0, 20*time.Second), over(minute, 20*time.Second), ok(hour, 4, time.Hour)}, 2,
			`retry-after: 20|x-ratelimit-limit: 10|x-ratelimit-remaining: 0|x-ratelimit-reset: 20`},
		{"over wins over fewer left after it", []ratelimit.Status{over(hour, time.Hour), ok(second, 0, time.Second)}, 0,
			`retry-after: 3600|x-ratelimit-limit: 100|x-ratelimit-remaining: 0|x-ratelimit-reset: 3600`},
		{"none over: fewest left", []ratelimit.Status{ok(hour, 50, time.Hour), ok(minute, 3, time.Minute), ok(second, 4, time.Second)}, 1,
			`x-ratelimit-limit: 10|x-ratelimit-remaining: 3|x-ratelimit-reset: 60`},
		{"none over: first of a tie", []ratelimit.Status{ok(hour, 3, time.Hour), ok(minute, 3, time.Minute)}, 0,
			`x-ratelimit-limit: 100|x-ratelimit-remaining: 3|x-ratelimit-reset: 3600`},
		{"shadow over counts as 0 left", []ratelimit.Status{ok(minute, 2, time.Minute), {Limit: shadow, ShadowOverLimit: true, ResetAfter: 30 * time.Second}}, 1,
			`x-ratelimit-limit: 1|x-ratelimit-remaining: 0|x-ratelimit-reset: 30`},
		{"enforced over beats a later shadow over", []ratelimit.Status{over(minute, time.Minute), {Limit: shadow, ShadowOverLimit: true, ResetAfter: 30 * time.Second}}, 0,
			`retry-after: 60|x-ratelimit-limit: 10|x-ratelimit-remaining: 0|x-ratelimit-reset: 60`},
		{"unlimited and unmatched are never reported", []ratelimit.Status{{Limit: unlimited, Remaining: math.MaxUint32}, {}, ok(hour, 7, time.Hour)}, 2,
			`x-ratelimit-limit: 100|x-ratelimit-remaining: 7|x-ratelimit-reset: 3600`},
		{"MaxUint32 left is never below the start", []ratelimit.Status{ok(&ratelimit.Limit{Requests: math.MaxUint32, Unit: ratelimit.Day}, math.MaxUint32, time.Hour)}, -1, ``},
		{"nothing", nil, -1, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ratelimit.Result{Statuses: tt.give}
			for _, st := range tt.give {
				if st.Code == ratelimit.OverLimit {
					r.Code = ratelimit.OverLimit
				}
			}
			if got := r.Reported(); got != tt.want {
				t.Errorf("Reported() = %d, want %d", got, tt.want)
			}
			var hs []string
			for _, h := range r.Headers(ratelimit.HeaderOptions{Legacy: true}) {
				hs = append(hs, h.Name+": "+h.Value)
			}
			if got := strings.Join(hs, "|"); got != tt.wantHeaders {
				t.Errorf("headers\n %s\nwant\n %s", got, tt.wantHeaders)
			}
		})
	}
}
