package extauthz_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// TestDenyBodyClipsEchoedInput: the request id is the only client-sized
// value a denial echoes; whatever its size and bytes, the body is small,
// valid JSON and not HTML-escaped.
func TestDenyBodyClipsEchoedInput(t *testing.T) {
	srv := extauthz.New(testPipeline(t), extauthz.Options{})
	max := extauthz.MaxEchoedRequestID
	tests := []struct {
		name   string
		give   string
		want   string // the request_id field exactly
		maxLen int    // of the whole body
	}{
		{name: "envoy uuid", give: "0b5c6c6f-7f9d-4b8c-9d63-1f9b7f3c2a10", want: "0b5c6c6f-7f9d-4b8c-9d63-1f9b7f3c2a10", maxLen: 200},
		{name: "angle brackets not escaped", give: "<a&b>", want: "<a&b>", maxLen: 200},
		{name: "1 MiB of <", give: strings.Repeat("<", 1<<20), want: strings.Repeat("<", max-3) + "...", maxLen: 300},
		{name: "exactly the limit", give: strings.Repeat("r", max), want: strings.Repeat("r", max), maxLen: 300},
		{name: "one over the limit", give: strings.Repeat("r", max+1), want: strings.Repeat("r", max-3) + "...", maxLen: 300},
		{name: "multi-byte runes cut at a boundary", give: strings.Repeat("é", 1000), want: strings.Repeat("é", (max-3)/2) + "...", maxLen: 300},
		{name: "1 MiB of invalid UTF-8", give: strings.Repeat("\xff", 1<<20), want: "\uFFFD...", maxLen: 300},
		{name: "quotes and backslashes", give: strings.Repeat(`"\`, 1<<16), want: strings.Repeat(`"\`, (max-3)/2) + `"...`, maxLen: 600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No route matches this host: a 403 denial with a body.
			req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "elsewhere.org", Path: "/", RequestID: tt.give})
			resp, err := srv.Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			body := resp.GetDeniedResponse().GetBody()
			if len(body) > tt.maxLen {
				t.Errorf("body is %d bytes, want at most %d", len(body), tt.maxLen)
			}
			if strings.Contains(body, `\u003c`) || strings.Contains(body, `\u0026`) {
				t.Errorf("body is HTML-escaped: %.80s", body)
			}
			var got struct {
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body is not JSON: %v: %.80s", err, body)
			}
			if got.RequestID != tt.want {
				t.Errorf("request_id = %.60q (%d bytes), want %.60q (%d bytes)", got.RequestID, len(got.RequestID), tt.want, len(tt.want))
			}
			if !utf8.ValidString(got.RequestID) {
				t.Error("request_id is not UTF-8")
			}
		})
	}
}

// caseVariants is a headers map of n names that differ only in case: n
// spellings of an 18-letter name, each letter upper-cased by one bit of i.
func caseVariants(n int) *authv3.CheckRequest {
	const name = "x-abcdefghijklmnopqr"
	h := make(map[string]string, n+4)
	for i := range n {
		b := []byte(name)
		letter := 0
		for j := range b {
			if b[j] >= 'a' && b[j] <= 'z' {
				if i>>letter&1 == 1 {
					b[j] -= 'a' - 'A'
				}
				letter++
			}
		}
		h[string(b)] = "v"
	}
	h[":method"], h[":path"], h[":authority"] = "GET", "/", "shop.example.com"
	return httpRequest(h)
}

// TestCaseVariantsJoinIsLinear: joining n case variants of one name
// allocates in proportion to n. Appending to the joined string, as the
// adapter once did, makes 100× the variants cost 10,000× the bytes.
func TestCaseVariantsJoinIsLinear(t *testing.T) {
	alloc := func(n int) (uint64, int) {
		req := caseVariants(n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := extauthz.RequestFromProto(req)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc, len(r.Headers["x-abcdefghijklmnopqr"])
	}
	const small = 200
	a1, l1 := alloc(small)
	a100, l100 := alloc(100 * small)
	if l1 != 2*small-1 || l100 != 200*small-1 {
		t.Fatalf("joined values are %d and %d bytes, want %d and %d", l1, l100, 2*small-1, 200*small-1)
	}
	// Linear: ~100×. Map growth and sorting make it a little more;
	// quadratic would be ~10,000×.
	if ratio := float64(a100) / float64(a1); ratio > 300 {
		t.Errorf("100× the variants allocated %.0f× the bytes (%d → %d)", ratio, a1, a100)
	}
}

// BenchmarkRequestFromProtoCaseVariants scales the case variants of one
// name 10× and 100×: time per op must grow about as much (21,500
// variants, what fits in 1 MiB, took 4.5 s when joining was quadratic).
func BenchmarkRequestFromProtoCaseVariants(b *testing.B) {
	for _, n := range []int{215, 2150, 21500} {
		req := caseVariants(n)
		b.Run(fmt.Sprintf("variants=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := extauthz.RequestFromProto(req); len(r.Headers["x-abcdefghijklmnopqr"]) != 2*n-1 {
					b.Fatal("variants not joined")
				}
			}
		})
	}
}
