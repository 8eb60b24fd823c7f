package rls_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

// checkEncode compares AppendResponse with a deterministic proto.Marshal
// of the generated path's message, and checks it reads back as that
// message.
func checkEncode(t testing.TB, res *ratelimit.Result, n int, headers bool) {
	t.Helper()
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(rls.ToProto(*res, n, headers))
	if err != nil {
		t.Fatal(err)
	}
	prefix := []byte("keep")
	got := rls.AppendResponse(bytes.Clone(prefix), res, n, headers)
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("AppendResponse overwrote what was in the buffer")
	}
	if got = got[len(prefix):]; !bytes.Equal(got, want) {
		t.Fatalf("AppendResponse\n%x\nproto.Marshal\n%x\nresult %+v n=%d headers=%v", got, want, res, n, headers)
	}
	var back pb.RateLimitResponse
	if err := proto.Unmarshal(got, &back); err != nil {
		t.Fatalf("answer does not decode: %v", err)
	}
}

// resultGen makes Results of every shape the limiter returns, and some
// it does not (units no enum has, negative or huge resets), from r.
type resultGen struct{ r *rand.Rand }

func (g resultGen) limit() *ratelimit.Limit {
	switch g.r.IntN(8) {
	case 0:
		return nil
	case 1:
		return &ratelimit.Limit{Name: "unlimited", Unlimited: true}
	}
	names := []string{"", "per-user", "limited-global", "é✓", string(bytes.Repeat([]byte("n"), 200))}
	requests := []uint32{0, 1, 5, 127, 128, 1000, math.MaxUint32}
	return &ratelimit.Limit{
		Name:     names[g.r.IntN(len(names))],
		Requests: requests[g.r.IntN(len(requests))],
		Unit:     ratelimit.Unit(g.r.IntN(10) - 1), // unknown, every unit, and beyond
		Shadow:   g.r.IntN(5) == 0,
	}
}

func (g resultGen) duration() time.Duration {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return -time.Duration(g.r.Int64N(int64(time.Hour)))
	case 2:
		return time.Duration(g.r.Int64N(math.MaxInt64))
	case 3:
		return 365 * 24 * time.Hour
	}
	return time.Duration(g.r.Int64N(int64(2 * time.Minute)))
}

func (g resultGen) result() (*ratelimit.Result, int) {
	n := g.r.IntN(6)
	res := &ratelimit.Result{Statuses: make([]ratelimit.Status, n)}
	for i := range res.Statuses {
		st := &res.Statuses[i]
		st.Code = ratelimit.Code(g.r.IntN(2))
		st.Limit = g.limit()
		remaining := []uint32{0, 1, 999, math.MaxUint32, g.r.Uint32()}
		st.Remaining = remaining[g.r.IntN(len(remaining))]
		st.ResetAfter = g.duration()
		st.ShadowOverLimit = g.r.IntN(6) == 0
		if st.Code == ratelimit.OverLimit {
			res.Code = ratelimit.OverLimit
		}
	}
	if g.r.IntN(8) == 0 {
		res.Failed = true
		res.Statuses = nil
		res.Code = ratelimit.Code(g.r.IntN(2))
		res.FailedOpen = res.Code == ratelimit.OK
	}
	return res, n
}

// TestAppendResponseRandom: 20,000 random results, with and without the
// response headers.
func TestAppendResponseRandom(t *testing.T) {
	g := resultGen{rand.New(rand.NewPCG(20, 2))}
	for range 20000 {
		res, n := g.result()
		checkEncode(t, res, n, g.r.IntN(2) == 0)
	}
}

// TestAppendResponsePinned: the answers of each kind the service gives.
func TestAppendResponsePinned(t *testing.T) {
	perUser := &ratelimit.Limit{Name: "per-user", Requests: 5, Unit: ratelimit.Minute}
	tests := []struct {
		name    string
		res     ratelimit.Result
		n       int
		headers bool
	}{
		{"ok, no limits", ratelimit.Result{Statuses: make([]ratelimit.Status, 2)}, 2, true},
		{"ok with a limit", ratelimit.Result{Statuses: []ratelimit.Status{{Limit: perUser, Remaining: 4, ResetAfter: 35 * time.Second}}}, 1, false},
		{"ok with a limit and headers", ratelimit.Result{Statuses: []ratelimit.Status{{Limit: perUser, Remaining: 4, ResetAfter: 35*time.Second + 1}}}, 1, true},
		{"over limit", ratelimit.Result{Code: ratelimit.OverLimit, Statuses: []ratelimit.Status{{Limit: perUser}, {Code: ratelimit.OverLimit, Limit: perUser, ResetAfter: time.Second}}}, 2, true},
		{"unlimited", ratelimit.Result{Statuses: []ratelimit.Status{{Limit: &ratelimit.Limit{Unlimited: true}, Remaining: math.MaxUint32}}}, 1, true},
		{"reset 0", ratelimit.Result{Statuses: []ratelimit.Status{{Limit: perUser, Remaining: 1}}}, 1, true},
		{"a limit without a name, requests or unit", ratelimit.Result{Statuses: []ratelimit.Status{{Limit: &ratelimit.Limit{}}}}, 1, true},
		{"failed open", ratelimit.Result{Failed: true, FailedOpen: true}, 3, true},
		{"failed closed 429", ratelimit.Result{Failed: true, Code: ratelimit.OverLimit}, 2, true},
		{"no descriptors", ratelimit.Result{}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkEncode(t, &tt.res, tt.n, tt.headers)
		})
	}
}

// FuzzAppendResponse holds AppendResponse to proto.Marshal on results
// read from the fuzzer's bytes.
func FuzzAppendResponse(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Add([]byte{0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		seed := make([]byte, 16)
		copy(seed, b)
		g := resultGen{rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed), binary.LittleEndian.Uint64(seed[8:])))}
		res, n := g.result()
		checkEncode(t, res, n, len(b) > 0 && b[0]&1 == 1)
	})
}
