package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/tokens"
)

// The oracle: grpc-go's codec is proto.Unmarshal into the generated
// message, then fullCheckAnswer / fullRateLimitAnswer (what -decode full
// judges).

func fullCheck(b []byte) (checkAnswer, error) {
	m := &authv3.CheckResponse{}
	if err := proto.Unmarshal(b, m); err != nil {
		return checkAnswer{}, err
	}
	return fullCheckAnswer(m), nil
}

func fullRateLimit(b []byte) (rateLimitAnswer, error) {
	m := &rlsv3.RateLimitResponse{}
	if err := proto.Unmarshal(b, m); err != nil {
		return rateLimitAnswer{}, err
	}
	return fullRateLimitAnswer(m), nil
}

// sameCheck fails unless the lean reading of b is the full decode's: both
// refuse, or both read the same code and kind.
func sameCheck(t testing.TB, b []byte) {
	t.Helper()
	want, wantErr := fullCheck(b)
	got, gotErr := readCheckAnswer(b)
	if (gotErr != nil) != (wantErr != nil) || got != want {
		t.Fatalf("CheckResponse %x:\n lean %+v, %v\n full %+v, %v", b, got, gotErr, want, wantErr)
	}
}

func sameRateLimit(t testing.TB, b []byte) {
	t.Helper()
	want, wantErr := fullRateLimit(b)
	got, gotErr := readRateLimitAnswer(b)
	if (gotErr != nil) != (wantErr != nil) || got != want {
		t.Fatalf("RateLimitResponse %x:\n lean %+v, %v\n full %+v, %v", b, got, gotErr, want, wantErr)
	}
}

func TestSchemasHaveNoGroups(t *testing.T) {
	for _, md := range []protoreflect.MessageDescriptor{checkResponseDescriptor(), rateLimitResponseDescriptor()} {
		b := newSchemaBuilder()
		b.message(md)
		if b.groups != 0 || len(b.done) < 5 {
			t.Errorf("%s: %d group fields, %d messages: the walker has no walk for groups", md.FullName(), b.groups, len(b.done))
		}
	}
}

// realCheckAnswers are the answers the servers send: ext-authz's own
// encoder on real decisions (what its Check handler writes), the no-op's
// answer, and the answers recorded from the live servers in testdata/
// (ext-authz, OPA-Envoy, envoyproxy/ratelimit, the no-op).
func realCheckAnswers(t testing.TB) [][]byte {
	t.Helper()
	id := &authz.Identity{Principal: tokens.Principal{Subject: "user-17", Issuer: "https://issuer.quickstart.example",
		Scopes: []string{"orders:read"}}, Authenticator: "jwt", Plan: "pro"}
	decisions := []authz.Decision{
		{ID: "d1", Rule: "api", Identity: id,
			UpstreamHeaders: []authz.Header{{Name: "x-auth-subject", Value: "user-17"}, {Name: "x-auth-scopes", Value: "orders:read"}},
			RemoveHeaders:   []string{"authorization", "x-auth-subject", "x-auth-scopes", "x-auth-method"},
			ResponseHeaders: []authz.Header{{Name: "ratelimit-remaining", Value: "9"}}, RateLimitPolicy: `"pro/api/second";q=100;w=1`},
		{ID: "d2", Code: authz.Unauthenticated, Reason: "invalid_credential", Rule: "api", Challenges: []string{`Bearer realm="gateway"`}},
		{ID: "d3", Code: authz.Forbidden, Reason: "insufficient_scope", Identity: id},
		{ID: "d4", Code: authz.RateLimited, Reason: "rate_limited", Identity: id, ResponseHeaders: []authz.Header{{Name: "retry-after", Value: "1"}}},
		{ID: "d5", Code: authz.Unavailable, Reason: "store_unavailable"},
		{ID: "d6", Code: authz.BadRequest, Reason: extauthz.ReasonUnreadable},
		{},
	}
	var out [][]byte
	for i := range decisions {
		out = append(out, extauthz.AppendCheckResponse(nil, &decisions[i], "authzload-000017"))
	}
	noop, err := proto.Marshal(&authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}})
	if err != nil {
		t.Fatal(err)
	}
	return append(append(out, noop), recorded(t, "check-*.bin")...)
}

func recorded(t testing.TB, glob string) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "answers", glob))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func realRateLimitAnswers(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, m := range []*rlsv3.RateLimitResponse{
		{OverallCode: rlsv3.RateLimitResponse_OK},
		{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OVER_LIMIT, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_SECOND}},
			{Code: rlsv3.RateLimitResponse_OK, LimitRemaining: 99}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, recorded(t, "rls-*.bin")...)
}

func TestLeanReadsRealAnswers(t *testing.T) {
	answers := realCheckAnswers(t)
	if len(answers) < 8 {
		t.Fatalf("%d answers", len(answers))
	}
	kinds := map[uint8]int{}
	for _, b := range answers {
		sameCheck(t, b)
		a, err := readCheckAnswer(b)
		if err != nil {
			t.Fatalf("a real answer was refused: %x", b)
		}
		kinds[a.Kind]++
	}
	if kinds[kindOK] == 0 || kinds[kindDenied] == 0 {
		t.Errorf("kinds %v: want OK and denied answers among the real ones", kinds)
	}
	for _, b := range realRateLimitAnswers(t) {
		sameRateLimit(t, b)
	}
	// The judged outcomes of the real answers, pinned.
	for i, want := range []string{"ok", "unauthenticated", "forbidden", "rate_limited", "unavailable", "bad_request", "ok", "ok"} {
		if a, _ := readCheckAnswer(answers[i]); a.outcome() != want {
			t.Errorf("answer %d: outcome %q, want %q", i, a.outcome(), want)
		}
	}
}

// fill sets random fields of m, depth levels of messages deep. Strings
// are valid UTF-8 (proto.Marshal refuses others; the mutations below make
// the invalid ones).
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	fs := m.Descriptor().Fields()
	for i := range fs.Len() {
		fd := fs.Get(i)
		if r.IntN(3) == 0 {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range r.IntN(3) {
				k := randomScalar(r, fd.MapKey()).MapKey()
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					if depth <= 0 {
						continue
					}
					v := mp.NewValue()
					fill(r, v.Message(), depth-1)
					mp.Set(k, v)
				} else {
					mp.Set(k, randomScalar(r, fd.MapValue()))
				}
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range r.IntN(3) {
				if fd.Kind() == protoreflect.MessageKind {
					if depth <= 0 {
						continue
					}
					v := l.NewElement()
					fill(r, v.Message(), depth-1)
					l.Append(v)
				} else {
					l.Append(randomScalar(r, fd))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth > 0 {
				fill(r, m.Mutable(fd).Message(), depth-1)
			}
		default:
			m.Set(fd, randomScalar(r, fd))
		}
	}
}

var words = []string{"", "a", "ok", "x-auth-subject", "user-17", "é", "日本", strings.Repeat("z", 200), "Bearer realm=\"g\""}

func randomScalar(r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 0)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(r.IntN(6) - 1))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		vs := []int32{0, 1, 7, 14, 16, -1, math.MaxInt32, math.MinInt32}
		return protoreflect.ValueOfInt32(vs[r.IntN(len(vs))])
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(r.Uint32())
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(r.Int64() - r.Int64())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(r.Uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(r.Float32())
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(r.NormFloat64())
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(words[r.IntN(len(words))])
	case protoreflect.BytesKind:
		b := make([]byte, r.IntN(8))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	}
	panic("unhandled kind " + fd.Kind().String())
}

// mutate damages b the way a broken or hostile server might: flipped
// bytes, truncation, spliced bytes, invalid UTF-8 in place of a letter.
func mutate(r *rand.Rand, b []byte) []byte {
	b = bytes.Clone(b)
	for range 1 + r.IntN(3) {
		switch op := r.IntN(6); {
		case op == 0 && len(b) > 0:
			b[r.IntN(len(b))] ^= byte(1 << r.IntN(8))
		case op == 1 && len(b) > 0:
			b = b[:r.IntN(len(b))]
		case op == 2:
			i := r.IntN(len(b) + 1)
			junk := []byte{0xff, 0x80, 0x00, 0x07, 0x0c, 0x0b, 0x3a, 0x01}
			b = append(b[:i:i], append([]byte{junk[r.IntN(len(junk))]}, b[i:]...)...)
		case op == 3 && len(b) > 0:
			// A letter becomes a byte that is never UTF-8.
			for range 8 {
				i := r.IntN(len(b))
				if b[i] >= 'a' && b[i] <= 'z' {
					b[i] = 0xff
					break
				}
			}
		case op == 4 && len(b) > 0:
			b[r.IntN(len(b))] = byte(r.Uint32())
		default:
			i := r.IntN(len(b) + 1)
			b = append(b[:i:i], append(bytes.Clone(b[i:min(len(b), i+1+r.IntN(8))]), b[i:]...)...)
		}
	}
	return b
}

// TestLeanMatchesFullRandom: random messages of both types, their
// encodings and thousands of damaged copies of them and of the real
// answers; the lean reading refuses exactly what proto.Unmarshal refuses
// and reads the same code and kind from everything else.
func TestLeanMatchesFullRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 2026))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	refused, read := 0, 0
	count := func(err error) {
		if err != nil {
			refused++
		} else {
			read++
		}
	}
	seeds := realCheckAnswers(t)
	for i := range n {
		m := &authv3.CheckResponse{}
		fill(r, m.ProtoReflect(), 4)
		b, err := proto.MarshalOptions{Deterministic: i%2 == 0}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		sameCheck(t, b)
		for _, src := range [][]byte{b, seeds[r.IntN(len(seeds))]} {
			mb := mutate(r, src)
			sameCheck(t, mb)
			_, err := readCheckAnswer(mb)
			count(err)
		}
		// Two answers in one buffer: proto merges them.
		sameCheck(t, append(bytes.Clone(seeds[r.IntN(len(seeds))]), b...))
	}
	rlSeeds := realRateLimitAnswers(t)
	for range n {
		m := &rlsv3.RateLimitResponse{}
		fill(r, m.ProtoReflect(), 4)
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		sameRateLimit(t, b)
		sameRateLimit(t, mutate(r, b))
		sameRateLimit(t, mutate(r, rlSeeds[r.IntN(len(rlSeeds))]))
	}
	for range n {
		junk := make([]byte, r.IntN(40))
		for i := range junk {
			junk[i] = byte(r.Uint32())
		}
		sameCheck(t, junk)
		sameRateLimit(t, junk)
	}
	// The damaged copies must exercise both sides.
	if refused < n/10 || read < n/10 {
		t.Errorf("damaged answers: %d refused, %d read; want many of each", refused, read)
	}
}

// Wire-building helpers for the pinned cases.
func tagged(num protowire.Number, typ protowire.Type) []byte {
	return protowire.AppendTag(nil, num, typ)
}

func bytesField(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// nestedValue is a google.protobuf.Value nested levels deep through
// list_value (6) → values (1), or through struct_value (5) → fields (1)
// map entries when maps is set, written outside-in without recursion.
func nestedValue(levels int, maps bool) []byte {
	// Each level wraps the inner bytes in: Value.list_value{values: inner}
	// or Value.struct_value{fields: {key: "k", value: inner}}.
	inner := varintField(4, 1) // bool_value true
	lens := make([]int, levels+1)
	lens[0] = len(inner)
	for i := 1; i <= levels; i++ {
		l := lens[i-1]
		if maps {
			entry := len(bytesField(1, []byte("k"))) + protowire.SizeTag(2) + protowire.SizeBytes(l)
			mid := protowire.SizeTag(1) + protowire.SizeBytes(entry)
			lens[i] = protowire.SizeTag(5) + protowire.SizeBytes(mid)
		} else {
			mid := protowire.SizeTag(1) + protowire.SizeBytes(l)
			lens[i] = protowire.SizeTag(6) + protowire.SizeBytes(mid)
		}
	}
	b := make([]byte, 0, lens[levels])
	for i := levels; i >= 1; i-- {
		l := lens[i-1]
		if maps {
			entry := len(bytesField(1, []byte("k"))) + protowire.SizeTag(2) + protowire.SizeBytes(l)
			mid := protowire.SizeTag(1) + protowire.SizeBytes(entry)
			b = protowire.AppendVarint(protowire.AppendTag(b, 5, protowire.BytesType), uint64(mid))
			b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.BytesType), uint64(entry))
			b = append(b, bytesField(1, []byte("k"))...)
			b = protowire.AppendVarint(protowire.AppendTag(b, 2, protowire.BytesType), uint64(l))
		} else {
			mid := protowire.SizeTag(1) + protowire.SizeBytes(l)
			b = protowire.AppendVarint(protowire.AppendTag(b, 6, protowire.BytesType), uint64(mid))
			b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.BytesType), uint64(l))
		}
	}
	return append(b, inner...)
}

// TestLeanMatchesFullCases: pinned edges of the wire form, each compared
// with the full decode (which decides what is right).
func TestLeanMatchesFullCases(t *testing.T) {
	okStatus := bytesField(1, nil)
	denied := bytesField(2, nil)
	ok := bytesField(3, nil)
	errResp := bytesField(5, nil)
	header := func(key, value string) []byte { // OkHttpResponse.headers (2): HeaderValueOption{header: HeaderValue{key, value}}
		return bytesField(2, bytesField(1, cat(bytesField(1, []byte(key)), bytesField(2, []byte(value)))))
	}
	metadata := func(key string, value []byte) []byte { // dynamic_metadata (4): Struct{fields: {key: value}}
		return bytesField(4, bytesField(1, cat(bytesField(1, []byte(key)), bytesField(2, value))))
	}
	cases := []struct {
		name string
		give []byte
		want *checkAnswer // nil: refused
	}{
		{"empty", nil, &checkAnswer{}},
		{"ok with ok_response", cat(okStatus, ok), &checkAnswer{Kind: kindOK}},
		{"401 with denied_response", cat(bytesField(1, varintField(1, 16)), denied), &checkAnswer{Code: 16, Kind: kindDenied}},
		{"error_response", cat(bytesField(1, varintField(1, 14)), errResp), &checkAnswer{Code: 14, Kind: kindError}},
		{"oneof: the last member wins", cat(ok, denied), &checkAnswer{Kind: kindDenied}},
		{"oneof: back to the first", cat(ok, denied, ok), &checkAnswer{Kind: kindOK}},
		{"status merged: the last code wins", cat(bytesField(1, varintField(1, 16)), bytesField(1, varintField(1, 7))), &checkAnswer{Code: 7}},
		{"status merged: a later status without code keeps it", cat(bytesField(1, varintField(1, 16)), bytesField(1, bytesField(2, []byte("x")))), &checkAnswer{Code: 16}},
		{"code: negative, ten-byte varint", bytesField(1, varintField(1, uint64(math.MaxUint64))), &checkAnswer{Code: -1}},
		{"code: above 32 bits truncates", bytesField(1, varintField(1, 1<<32|16)), &checkAnswer{Code: 16}},
		{"code: wrong wire type is an unknown field", bytesField(1, protowire.AppendFixed32(tagged(1, protowire.Fixed32Type), 16)), &checkAnswer{}},
		{"status: wrong wire type is an unknown field", varintField(1, 16), &checkAnswer{}},
		{"ok_response: wrong wire type is an unknown field", varintField(3, 1), &checkAnswer{}},
		{"unknown fields of every type", cat(varintField(9, 1), protowire.AppendFixed64(tagged(10, protowire.Fixed64Type), 1),
			bytesField(11, []byte{0xff}), cat(tagged(12, protowire.StartGroupType), varintField(1, 1), tagged(12, protowire.EndGroupType)), ok), &checkAnswer{Kind: kindOK}},
		{"status.message not UTF-8", bytesField(1, bytesField(2, []byte{0xff})), nil},
		{"status.details type_url not UTF-8", bytesField(1, bytesField(3, bytesField(1, []byte{0xc3, 0x28}))), nil},
		{"status.details value: any bytes", bytesField(1, bytesField(3, bytesField(2, []byte{0xff}))), &checkAnswer{}},
		{"header value deep in ok_response not UTF-8", cat(okStatus, bytesField(3, header("x-auth-subject", "\xff"))), nil},
		{"header value in ok_response UTF-8", cat(okStatus, bytesField(3, header("x-auth-subject", "é"))), &checkAnswer{Kind: kindOK}},
		{"metadata key not UTF-8", cat(ok, metadata("\xff", varintField(4, 1))), nil},
		{"metadata value string not UTF-8", cat(ok, metadata("k", bytesField(3, []byte{0xff}))), nil},
		{"metadata: map entry of the wrong wire type", cat(ok, bytesField(4, varintField(1, 1))), &checkAnswer{Kind: kindOK}},
		{"field number 0", cat(ok, tagged(0, protowire.VarintType), []byte{1}), nil},
		{"field number 0 inside ok_response", bytesField(3, cat(tagged(0, protowire.VarintType), []byte{1})), nil},
		{"end group without start", cat(ok, tagged(9, protowire.EndGroupType)), nil},
		{"group ends with the wrong number", cat(tagged(9, protowire.StartGroupType), tagged(8, protowire.EndGroupType)), nil},
		{"unterminated group", tagged(9, protowire.StartGroupType), nil},
		{"reserved wire type 6", cat(ok, []byte{9<<3 | 6}), nil},
		{"truncated length", []byte{3<<3 | 2, 5, 0}, nil},
		{"truncated varint", []byte{1 << 3, 0x80}, nil}, // field 1, varint type
		{"eleven-byte varint", cat(tagged(9, protowire.VarintType), bytes.Repeat([]byte{0x80}, 10), []byte{1}), nil},
		{"field number above 2^29-1", protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sameCheck(t, c.give)
			got, err := readCheckAnswer(c.give)
			if c.want == nil && err == nil {
				t.Errorf("read %+v, want refused", got)
			}
			if c.want != nil && (err != nil || got != *c.want) {
				t.Errorf("read %+v, %v; want %+v", got, err, *c.want)
			}
		})
	}
	// protobuf-go's recursion limit, through lists and through maps of
	// Values inside the metadata: the lean reading stops where it stops.
	for _, maps := range []bool{false, true} {
		per := 2 // Value, ListValue
		if maps {
			per = 3 // Value, Struct, the map entry
		}
		base := 10000 / per
		refusedAt := -1
		for levels := base - 3; levels <= base+3; levels++ {
			b := cat(ok, bytesField(4, bytesField(1, cat(bytesField(1, []byte("k")), bytesField(2, nestedValue(levels, maps))))))
			sameCheck(t, b)
			if _, err := readCheckAnswer(b); err != nil && refusedAt < 0 {
				refusedAt = levels
			}
		}
		if refusedAt < 0 {
			t.Errorf("maps=%v: no nesting around the limit was refused", maps)
		}
	}
	rl := []struct {
		name string
		give []byte
		want *rateLimitAnswer
	}{
		{"empty", nil, &rateLimitAnswer{}},
		{"over limit", varintField(1, 2), &rateLimitAnswer{Code: 2}},
		{"unknown enum value kept", varintField(1, 7), &rateLimitAnswer{Code: 7}},
		{"negative enum value", varintField(1, math.MaxUint64), &rateLimitAnswer{Code: -1}},
		{"the last code wins", cat(varintField(1, 2), varintField(1, 1)), &rateLimitAnswer{Code: 1}},
		{"code: wrong wire type", bytesField(1, nil), &rateLimitAnswer{}},
		{"raw_body: any bytes", cat(varintField(1, 2), bytesField(5, []byte{0xff})), &rateLimitAnswer{Code: 2}},
		{"header key not UTF-8", cat(varintField(1, 1), bytesField(3, bytesField(1, []byte{0xff}))), nil},
		{"descriptor status truncated", cat(varintField(1, 1), []byte{2<<3 | 2, 4, 8}), nil},
	}
	for _, c := range rl {
		t.Run("rls "+c.name, func(t *testing.T) {
			sameRateLimit(t, c.give)
			got, err := readRateLimitAnswer(c.give)
			if c.want == nil && err == nil {
				t.Errorf("read %+v, want refused", got)
			}
			if c.want != nil && (err != nil || got != *c.want) {
				t.Errorf("read %+v, %v; want %+v", got, err, *c.want)
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	tests := []struct {
		give checkAnswer
		want string
	}{
		{checkAnswer{}, "ok"},
		{checkAnswer{Kind: kindOK}, "ok"},
		{checkAnswer{Kind: kindDenied}, "ok+denied_response"},
		{checkAnswer{Kind: kindError}, "ok+error_response"},
		{checkAnswer{Code: 16, Kind: kindDenied}, "unauthenticated"},
		{checkAnswer{Code: 16, Kind: kindOK}, "unauthenticated+ok_response"},
		{checkAnswer{Code: 8}, "rate_limited"},
		{checkAnswer{Code: 5, Kind: kindError}, "status_notfound"},
		{checkAnswer{Code: -1}, "status_code(4294967295)"},
	}
	for _, tt := range tests {
		if got := tt.give.outcome(); got != tt.want {
			t.Errorf("%+v: outcome %q, want %q", tt.give, got, tt.want)
		}
	}
	for give, want := range map[int32]string{0: "unknown", 1: "ok", 2: "over_limit", 9: "unknown"} {
		if got := (rateLimitAnswer{Code: give}).outcome(); got != want {
			t.Errorf("overall_code %d: outcome %q, want %q", give, got, want)
		}
	}
}

// TestLeanCodecDoesNotAllocate: reading ext-authz's OK answer (identity
// headers, removals, metadata) allocates nothing.
func TestLeanCodecDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	b := realCheckAnswers(t)[0]
	data := mem.BufferSlice{mem.SliceBuffer(b)}
	var a checkAnswer
	allocs := testing.AllocsPerRun(200, func() {
		if err := (leanCodec{}).Unmarshal(data, &a); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || a.Kind != kindOK {
		t.Errorf("%v allocations per answer, kind %d", allocs, a.Kind)
	}
}

func FuzzCheckAnswer(f *testing.F) {
	for _, b := range realCheckAnswers(f) {
		f.Add(b)
	}
	f.Add([]byte{3<<3 | 2, 2, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) { sameCheck(t, b) })
}

func FuzzRateLimitAnswer(f *testing.F) {
	for _, b := range realRateLimitAnswers(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameRateLimit(t, b) })
}

// rawCodec lets a test server send any bytes as its answer.
type rawCodec struct{}

type rawMsg struct{ b []byte }

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMsg).b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawMsg).b = data.Materialize()
	return nil
}

// startRaw serves Check and ShouldRateLimit answering the given bytes,
// whatever they are, over a real socket.
func startRaw(t *testing.T, check, rls []byte) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}))
	handler := func(answer []byte) grpc.MethodHandler {
		return func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in rawMsg
			if err := dec(&in); err != nil {
				return nil, err
			}
			return &rawMsg{b: answer}, nil
		}
	}
	for _, sd := range []grpc.ServiceDesc{
		{ServiceName: "envoy.service.auth.v3.Authorization", HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{{MethodName: "Check", Handler: handler(check)}}},
		{ServiceName: "envoy.service.ratelimit.v3.RateLimitService", HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{{MethodName: "ShouldRateLimit", Handler: handler(rls)}}},
	} {
		srv.RegisterService(&sd, struct{}{})
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestDecodeModesAgreeOverGRPC drives servers that answer real, odd and
// broken bytes with both -decode modes, through the whole gRPC client:
// the outcome mix must be the same.
func TestDecodeModesAgreeOverGRPC(t *testing.T) {
	answers := realCheckAnswers(t)
	pool := filepath.Join(t.TempDir(), "pool.txt")
	if err := os.WriteFile(pool, []byte("tok-1\ntok-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		check, rls []byte
		want       string // the outcome of every answer
	}{
		{"ext-authz ok", answers[0], varintField(1, 1), "ok"},
		{"ext-authz 401", answers[1], varintField(1, 2), "unauthenticated"},
		{"ext-authz 429", answers[3], varintField(1, 2), "rate_limited"},
		{"ok with a denied_response", cat(bytesField(1, nil), bytesField(2, nil)), varintField(1, 0), "ok+denied_response"},
		{"not UTF-8 deep inside", cat(bytesField(1, nil), bytesField(3, bytesField(2, bytesField(1, bytesField(2, []byte{0xff}))))),
			cat(varintField(1, 1), bytesField(3, bytesField(1, []byte{0xff}))), "grpc_internal"},
		{"truncated", answers[0][:len(answers[0])-3], []byte{8}, "grpc_internal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := startRaw(t, c.check, c.rls)
			for _, scenario := range []string{"jwt", "rls"} {
				want := c.want
				if scenario == "rls" {
					want = map[string]string{"ok": "ok", "ok+denied_response": "unknown", "grpc_internal": "grpc_internal"}[c.want]
					if want == "" {
						want = "over_limit"
					}
				}
				for _, decode := range []string{decodeLean, decodeFull} {
					var out bytes.Buffer
					err := run(context.Background(), []string{"-addr", addr, "-scenario", scenario, "-pool", pool,
						"-workers", "2", "-conns", "1", "-duration", "200ms", "-warmup", "0s", "-rounds", "1",
						"-decode", decode, "-expect", want}, &out, io.Discard)
					if err != nil {
						t.Fatalf("%s -decode %s: %v\n%s", scenario, decode, err, out.String())
					}
					if !strings.Contains(out.String(), "["+want+"=100.0%]") {
						t.Errorf("%s -decode %s: want every answer %s:\n%s", scenario, decode, want, out.String())
					}
				}
			}
		})
	}
}

// TestFreshRefusesWrappedPool: -fresh sends each server each request at
// most once; a pool too small for the run fails it with the size needed.
func TestFreshRefusesWrappedPool(t *testing.T) {
	target, baseline := startFake(t), startFake(t)
	dir := t.TempDir()
	pool := filepath.Join(dir, "jwt.txt")
	if err := os.WriteFile(pool, []byte("tok-1\ntok-2\ntok-3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"-addr", target, "-baseline", baseline, "-scenario", "jwt", "-pool", pool,
		"-workers", "2", "-conns", "1", "-duration", "200ms", "-warmup", "0s", "-rounds", "1", "-fresh"}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "wrapped for the target") || !strings.Contains(err.Error(), "mint a pool of at least") {
		t.Fatalf("err = %v, want a wrapped pool refused\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "fresh pool=3") || !strings.Contains(out.String(), "fresh: sent ") {
		t.Errorf("output does not report the fresh pool:\n%s", out.String())
	}
}

// TestFreshCursor: every index once, in order, before any repeats; the
// repeats are counted.
func TestFreshCursor(t *testing.T) {
	c := newCursor(3)
	var got []uint64
	for seq := range uint64(5) {
		got = append(got, c.pick(seq*7))
	}
	if want := []uint64{0, 1, 2, 0, 1}; !equalU64(got, want) || c.used() != 5 || c.wrapped.Load() != 2 {
		t.Errorf("picks %v, used %d, wrapped %d; want %v, 5, 2", got, c.used(), c.wrapped.Load(), want)
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BenchmarkReadAnswer: the driver's cost of reading one answer, lean
// against grpc-go's codec (full), for ext-authz's OK answer and the
// no-op's.
func BenchmarkReadAnswer(b *testing.B) {
	answers := realCheckAnswers(b)
	for _, a := range []struct {
		name string
		b    []byte
	}{{"ext-authz-ok", answers[0]}, {"ext-authz-401", answers[1]}, {"noop-ok", answers[7]}} {
		data := mem.BufferSlice{mem.SliceBuffer(a.b)}
		b.Run("lean/"+a.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var ans checkAnswer
				if err := (leanCodec{}).Unmarshal(data, &ans); err != nil {
					b.Fatal(err)
				}
			}
		})
		codec := encoding.GetCodecV2(grpcproto.Name)
		b.Run("full/"+a.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := &authv3.CheckResponse{}
				if err := codec.Unmarshal(data, m); err != nil {
					b.Fatal(err)
				}
				_ = fullCheckAnswer(m)
			}
		})
	}
}

// TestRecordedAnswers: the answers recorded from the live servers
// (testdata/answers/, by loadtest/lib.sh's servers and a raw-bytes client:
// ext-authz, OPA-Envoy v1.10.0-envoy, envoyproxy/ratelimit, the no-op)
// read the same both ways, to the outcome their names say.
func TestRecordedAnswers(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "answers", "*.bin"))
	if err != nil || len(files) < 12 {
		t.Fatalf("%d recorded answers, %v", len(files), err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		want := ""
		for _, w := range []struct{ part, outcome string }{
			{"-ok", "ok"}, {"-401", "unauthenticated"}, {"-403", "forbidden"}, {"-429", "rate_limited"},
			{"opa-envoy-deny", "forbidden"}, {"-over", "over_limit"},
		} {
			if strings.Contains(name, w.part) {
				want = w.outcome
			}
		}
		var got string
		if strings.HasPrefix(name, "rls-") {
			sameRateLimit(t, b)
			a, err := readRateLimitAnswer(b)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = a.outcome()
		} else {
			sameCheck(t, b)
			a, err := readCheckAnswer(b)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = a.outcome()
		}
		if got != want {
			t.Errorf("%s: outcome %q, want %q", name, got, want)
		}
	}
}
