package rls_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"

	pb_struct "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

// oracleDecode is what the generated path does with a request's wire
// form: grpc-go's codec (proto.Unmarshal) and fromProto.
func oracleDecode(b []byte) (req ratelimit.Request, invalid, wireErr error) {
	var m pb.RateLimitRequest
	if err := proto.Unmarshal(b, &m); err != nil {
		if strings.Contains(err.Error(), "invalid UTF-8") {
			return ratelimit.Request{}, nil, rls.ErrInvalidUTF8
		}
		return ratelimit.Request{}, nil, rls.ErrMalformed
	}
	req, invalid = rls.FromProto(&m)
	return req, invalid, nil
}

// checkDecode compares DecodeRequest with the oracle on b.
func checkDecode(t testing.TB, b []byte) {
	t.Helper()
	wantReq, wantInvalid, wantErr := oracleDecode(b)
	gotReq, gotInvalid, gotErr := rls.DecodeRequest(b)
	if !errors.Is(gotErr, wantErr) || (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("wire error %v, proto.Unmarshal's %v; message %x", gotErr, wantErr, b)
	}
	if fmt.Sprint(gotInvalid) != fmt.Sprint(wantInvalid) {
		t.Fatalf("invalid %v, fromProto's %v; message %x", gotInvalid, wantInvalid, b)
	}
	if !reflect.DeepEqual(gotReq, wantReq) {
		t.Fatalf("request\n%#v\nfromProto's\n%#v\nmessage %x", gotReq, wantReq, b)
	}
}

// wireGen writes random RateLimitRequests in the wire form, driven by the
// schema: every known field with its own and with other wire types,
// repeats of singular fields, unknown fields of every wire type (groups
// nested), invalid UTF-8 in the strings, and now and then a truncation
// or a flipped byte.
type wireGen struct{ r *rand.Rand }

func (g wireGen) str() []byte {
	switch g.r.IntN(12) {
	case 0:
		return nil
	case 1:
		return []byte{0xff, 'a'} // invalid UTF-8
	case 2:
		return []byte("\xe2\x82") // truncated rune
	case 3:
		return []byte("é✓ü")
	case 4:
		return bytes.Repeat([]byte("k"), 130) // a two-byte length
	}
	words := []string{"user", "tenant", "generic_key", "limited", "a", "b", "contract", "route", "remote_address"}
	return []byte(words[g.r.IntN(len(words))])
}

func (g wireGen) varint() uint64 {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return math.MaxUint64
	case 2:
		return uint64(g.r.Uint32())
	case 3:
		return 1 << 32 // truncated to 0 in a uint32 / enum
	}
	return uint64(g.r.IntN(10))
}

// unknown appends an unknown field (a number no message here uses, or
// one of the known numbers with another wire type).
func (g wireGen) unknown(b []byte, depth int) []byte {
	num := protowire.Number(5 + g.r.IntN(30))
	if g.r.IntN(4) == 0 {
		num = protowire.Number(1 + g.r.IntN(4))
	}
	if g.r.IntN(20) == 0 {
		num = protowire.MaxValidNumber
	}
	switch g.r.IntN(5) {
	case 0:
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, g.varint())
	case 1:
		b = protowire.AppendTag(b, num, protowire.Fixed32Type)
		return protowire.AppendFixed32(b, g.r.Uint32())
	case 2:
		b = protowire.AppendTag(b, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, g.r.Uint64())
	case 3:
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, g.str())
	}
	b = protowire.AppendTag(b, num, protowire.StartGroupType)
	if depth < 3 {
		for range g.r.IntN(3) {
			b = g.unknown(b, depth+1)
		}
	}
	return protowire.AppendTag(b, num, protowire.EndGroupType)
}

func (g wireGen) bytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func (g wireGen) varintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func (g wireGen) entry() []byte {
	var b []byte
	for range g.r.IntN(4) {
		switch g.r.IntN(6) {
		case 0, 1:
			b = g.bytesField(b, 1, g.str())
		case 2, 3:
			b = g.bytesField(b, 2, g.str())
		default:
			b = g.unknown(b, 0)
		}
	}
	return b
}

func (g wireGen) wrapper() []byte {
	var b []byte
	for range g.r.IntN(3) {
		if g.r.IntN(4) == 0 {
			b = g.unknown(b, 0)
		} else {
			b = g.varintField(b, 1, g.varint())
		}
	}
	return b
}

func (g wireGen) override() []byte {
	var b []byte
	for range g.r.IntN(4) {
		switch g.r.IntN(5) {
		case 0:
			b = g.varintField(b, 1, g.varint())
		case 1, 2:
			u := uint64(g.r.IntN(9))
			if g.r.IntN(8) == 0 {
				u = g.varint()
			}
			b = g.varintField(b, 2, u)
		case 3:
			b = g.bytesField(b, 3, g.wrapper())
		default:
			b = g.unknown(b, 0)
		}
	}
	return b
}

func (g wireGen) descriptor() []byte {
	var b []byte
	n := g.r.IntN(5)
	if g.r.IntN(30) == 0 {
		n = 30 + g.r.IntN(6) // around maxEntries
	}
	for range n {
		switch g.r.IntN(10) {
		case 0, 1, 2, 3, 4:
			b = g.bytesField(b, 1, g.entry())
		case 5:
			b = g.bytesField(b, 2, g.override())
		case 6:
			b = g.bytesField(b, 3, g.wrapper())
		case 7:
			v := uint64(0)
			if g.r.IntN(6) == 0 {
				v = g.varint()
			}
			b = g.varintField(b, 4, v)
		default:
			b = g.unknown(b, 0)
		}
	}
	return b
}

func (g wireGen) request() []byte {
	var b []byte
	n := 1 + g.r.IntN(6)
	if g.r.IntN(40) == 0 {
		n = 60 + g.r.IntN(10) // around maxDescriptors
	}
	for range n {
		switch g.r.IntN(8) {
		case 0, 1:
			b = g.bytesField(b, 1, g.str())
		case 2, 3, 4:
			b = g.bytesField(b, 2, g.descriptor())
		case 5:
			b = g.varintField(b, 3, g.varint())
		default:
			b = g.unknown(b, 0)
		}
	}
	switch g.r.IntN(20) {
	case 0:
		if len(b) > 0 {
			b = b[:g.r.IntN(len(b))]
		}
	case 1:
		if len(b) > 0 {
			b[g.r.IntN(len(b))] ^= byte(1 + g.r.IntN(255))
		}
	}
	return b
}

// randomMessage is a go-control-plane message with random content, for
// the fuzz corpus and the marshalled cases.
func randomMessage(r *rand.Rand) *pb.RateLimitRequest {
	m := &pb.RateLimitRequest{Domain: []string{"", "contract", "loadtest", "x"}[r.IntN(4)], HitsAddend: uint32(r.IntN(3))}
	for range r.IntN(4) {
		d := &pb_struct.RateLimitDescriptor{}
		for range r.IntN(4) {
			d.Entries = append(d.Entries, &pb_struct.RateLimitDescriptor_Entry{Key: []string{"user", "tenant", "route", ""}[r.IntN(4)], Value: fmt.Sprint("v", r.IntN(5))})
		}
		if r.IntN(3) == 0 {
			d.Limit = &pb_struct.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: uint32(r.IntN(100)), Unit: typev3.RateLimitUnit(r.IntN(9) - 1)}
			if r.IntN(2) == 0 {
				d.Limit.UnitMultiplier = wrapperspb.UInt32(uint32(r.IntN(5)))
			}
		}
		if r.IntN(3) == 0 {
			d.HitsAddend = wrapperspb.UInt64(uint64(r.IntN(4)))
		}
		d.IsNegativeHits = r.IntN(10) == 0
		m.Descriptors = append(m.Descriptors, d)
	}
	return m
}

// TestDecodeRequestRandom holds DecodeRequest to proto.Unmarshal +
// fromProto on schema-driven random wire forms and on marshalled random
// messages.
func TestDecodeRequestRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 11))
	g := wireGen{r}
	var refused, invalid, ok int
	for range 30000 {
		b := g.request()
		checkDecode(t, b)
		switch req, inv, err := rls.DecodeRequest(b); {
		case err != nil:
			refused++
		case inv != nil:
			invalid++
		default:
			ok++
			_ = req
		}
	}
	for range 5000 {
		b, err := proto.Marshal(randomMessage(r))
		if err != nil {
			t.Fatal(err)
		}
		checkDecode(t, b)
	}
	// The generator must reach every outcome, or it tests too little.
	if refused < 1000 || invalid < 1000 || ok < 1000 {
		t.Fatalf("outcomes: %d refused, %d invalid, %d decoded; want each ≥ 1000", refused, invalid, ok)
	}
}

// wire builds a message from fields for the pinned cases. Each method
// returns a new message: cases extend shared prefixes.
type wire []byte

func (w wire) clone() []byte { return append([]byte(nil), w...) }

func (w wire) str(num protowire.Number, s string) wire {
	return wire(protowire.AppendString(protowire.AppendTag(w.clone(), num, protowire.BytesType), s))
}

func (w wire) msg(num protowire.Number, m wire) wire {
	return wire(protowire.AppendBytes(protowire.AppendTag(w.clone(), num, protowire.BytesType), m))
}

func (w wire) varint(num protowire.Number, v uint64) wire {
	return wire(protowire.AppendVarint(protowire.AppendTag(w.clone(), num, protowire.VarintType), v))
}

func (w wire) raw(b ...byte) wire { return append(w.clone(), b...) }

func entry(k, v string) wire { return wire(nil).str(1, k).str(2, v) }

// TestDecodeRequestPinned: the cases of each class, each against the
// oracle, and what it must come to.
func TestDecodeRequestPinned(t *testing.T) {
	user := wire(nil).msg(1, entry("user", "alice"))
	good := wire(nil).str(1, "contract").msg(2, user)
	tests := []struct {
		name string
		give wire
		want string // "ok", "invalid", "malformed", "utf8"
	}{
		{"plain", good, "ok"},
		{"empty message", wire{}, "invalid"},
		{"domain only", wire(nil).str(1, "contract"), "invalid"},
		{"empty domain", wire(nil).str(1, "").msg(2, user), "invalid"},
		{"duplicate domain, last wins", wire(nil).str(1, "").msg(2, user).str(1, "contract"), "ok"},
		{"duplicate domain, empty last", good.str(1, ""), "invalid"},
		{"domain as varint is unknown", wire(nil).varint(1, 5).msg(2, user), "invalid"},
		{"descriptor as varint is unknown", wire(nil).str(1, "contract").varint(2, 1), "invalid"},
		{"hits_addend as bytes is unknown", good.str(3, "x"), "ok"},
		{"hits_addend truncated to uint32", good.varint(3, 1<<32+3), "ok"},
		{"hits_addend 2^32 is 0, counted as 1", good.varint(3, 1<<32), "ok"},
		{"hits_addend last wins", good.varint(3, 7).varint(3, 2), "ok"},
		{"unknown varint", good.varint(99, 1), "ok"},
		{"unknown fixed32", good.raw(0x9d, 0x06, 1, 2, 3, 4), "ok"},
		{"unknown fixed64", good.raw(0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8), "ok"},
		{"unknown group", good.raw(0x9b, 0x06, 0x08, 0x01, 0x9c, 0x06), "ok"},
		{"unknown nested groups", good.raw(0x9b, 0x06, 0xa3, 0x06, 0xa4, 0x06, 0x9c, 0x06), "ok"},
		{"unknown group not closed", good.raw(0x9b, 0x06, 0x08, 0x01), "malformed"},
		{"unknown group closed by another number", good.raw(0x9b, 0x06, 0xa4, 0x06), "malformed"},
		{"unknown field, largest number", good.varint(protowire.MaxValidNumber, 1), "ok"},
		{"end group at top level", good.raw(0x0c), "malformed"},
		{"field number 0", good.raw(0x00, 0x01), "malformed"},
		{"field number 2^29", good.raw(0x80, 0x80, 0x80, 0x80, 0x10, 0x00), "malformed"},
		{"wire type 6", good.raw(0x0e), "malformed"},
		{"wire type 7", good.raw(0x0f), "malformed"},
		{"truncated tag varint", good.raw(0x80), "malformed"},
		{"truncated value varint", good.raw(0x18, 0x80, 0x80), "malformed"},
		{"overlong varint (11 bytes)", good.raw(0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "malformed"},
		{"10-byte varint overflowing 64 bits", good.raw(0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02), "malformed"},
		{"length past the end", good.raw(0x0a, 0x05, 'a'), "malformed"},
		{"truncated fixed64", good.raw(0x99, 0x06, 1, 2), "malformed"},
		{"invalid UTF-8 domain", wire(nil).str(1, "con\xfftract").msg(2, user), "utf8"},
		{"invalid UTF-8 key", wire(nil).str(1, "contract").msg(2, wire(nil).msg(1, entry("us\xc0er", "a"))), "utf8"},
		{"invalid UTF-8 value", wire(nil).str(1, "contract").msg(2, wire(nil).msg(1, entry("user", "\xed\xa0\x80"))), "utf8"},
		{"invalid UTF-8 in an unknown field is fine", good.str(50, "\xff"), "ok"},
		{"invalid UTF-8 domain overwritten still refused", wire(nil).str(1, "\xff").str(1, "contract").msg(2, user), "utf8"},
		{"entry with unknown fields", wire(nil).str(1, "contract").msg(2, wire(nil).msg(1, entry("user", "a").varint(7, 1).str(9, "x"))), "ok"},
		{"entry key last wins", wire(nil).str(1, "contract").msg(2, wire(nil).msg(1, entry("user", "a").str(1, "tenant"))), "ok"},
		{"entry key as varint is unknown", wire(nil).str(1, "contract").msg(2, wire(nil).msg(1, wire(nil).varint(1, 3).str(2, "a"))), "ok"},
		{"entry truncated inside", wire(nil).str(1, "contract").msg(2, wire(nil).msg(1, wire{0x0a, 0x09, 'u'})), "malformed"},
		{"empty entry", wire(nil).str(1, "contract").msg(2, wire(nil).msg(1, nil)), "ok"},
		{"empty descriptor", wire(nil).str(1, "contract").msg(2, nil), "ok"},
		{"descriptor entries in two runs", wire(nil).str(1, "contract").msg(2, wire(nil).msg(1, entry("a", "1")).varint(50, 1).msg(1, entry("b", "2"))), "ok"},
		{"override merged from two", wire(nil).str(1, "contract").msg(2, user.msg(2, wire(nil).varint(1, 5)).msg(2, wire(nil).varint(2, 2))), "ok"},
		{"override unit last wins", wire(nil).str(1, "contract").msg(2, user.msg(2, wire(nil).varint(1, 5).varint(2, 2).varint(2, 7))), "ok"},
		{"override empty", wire(nil).str(1, "contract").msg(2, user.msg(2, nil)), "ok"},
		{"override unit 2^32+2 is MINUTE", wire(nil).str(1, "contract").msg(2, user.msg(2, wire(nil).varint(1, 5).varint(2, 1<<32+2))), "ok"},
		{"override unit -1", wire(nil).str(1, "contract").msg(2, user.msg(2, wire(nil).varint(1, 5).varint(2, math.MaxUint64))), "ok"},
		{"override requests 2^32+1", wire(nil).str(1, "contract").msg(2, user.msg(2, wire(nil).varint(1, 1<<32+1).varint(2, 1))), "ok"},
		{"override unit_multiplier", wire(nil).str(1, "contract").msg(2, user.msg(2, wire(nil).varint(1, 5).varint(2, 1).msg(3, wire(nil).varint(1, 9)))), "ok"},
		{"override unit_multiplier malformed", wire(nil).str(1, "contract").msg(2, user.msg(2, wire(nil).msg(3, wire{0x08}))), "malformed"},
		{"override as varint is unknown", wire(nil).str(1, "contract").msg(2, user.varint(2, 1)), "ok"},
		{"hits_addend wrapper 0", wire(nil).str(1, "contract").msg(2, user.msg(3, wire(nil).varint(1, 0))), "ok"},
		{"hits_addend wrapper empty", wire(nil).str(1, "contract").msg(2, user.msg(3, nil)), "ok"},
		{"hits_addend wrapper merged", wire(nil).str(1, "contract").msg(2, user.msg(3, wire(nil).varint(1, 4)).msg(3, wire(nil).varint(9, 1))), "ok"},
		{"hits_addend wrapper max", wire(nil).str(1, "contract").msg(2, user.msg(3, wire(nil).varint(1, math.MaxUint64))), "ok"},
		{"hits_addend wrapper as varint is unknown", wire(nil).str(1, "contract").msg(2, user.varint(3, 4)), "ok"},
		{"is_negative_hits", wire(nil).str(1, "contract").msg(2, user.varint(4, 1)), "invalid"},
		{"is_negative_hits 2^32 is true", wire(nil).str(1, "contract").msg(2, user.varint(4, 1<<32)), "invalid"},
		{"is_negative_hits last wins", wire(nil).str(1, "contract").msg(2, user.varint(4, 1).varint(4, 0)), "ok"},
		{"is_negative_hits as bytes is unknown", wire(nil).str(1, "contract").msg(2, user.str(4, "x")), "ok"},
		{"descriptor with an end-group tag", wire(nil).str(1, "contract").msg(2, user.raw(0x0c)), "malformed"},
		{"wrapper with an end-group tag", wire(nil).str(1, "contract").msg(2, user.msg(3, wire{0x0c})), "malformed"},
	}
	many := wire(nil).str(1, "contract")
	for range 65 {
		many = many.msg(2, user)
	}
	tests = append(tests, struct {
		name string
		give wire
		want string
	}{"65 descriptors", many, "invalid"})
	var wide wire
	for range 33 {
		wide = wide.msg(1, entry("k", "v"))
	}
	tests = append(tests, struct {
		name string
		give wire
		want string
	}{"33 entries", wire(nil).str(1, "contract").msg(2, wide), "invalid"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkDecode(t, tt.give)
			_, invalid, err := rls.DecodeRequest(tt.give)
			got := "ok"
			switch {
			case errors.Is(err, rls.ErrInvalidUTF8):
				got = "utf8"
			case err != nil:
				got = "malformed"
			case invalid != nil:
				got = "invalid"
			}
			if got != tt.want {
				t.Fatalf("decoded as %s (%v, %v), want %s", got, err, invalid, tt.want)
			}
		})
	}
}

// TestDecodeRequestKeepsNoBuffer: the request's strings do not point into
// the message, whose buffer goes back to grpc-go's pool.
func TestDecodeRequestKeepsNoBuffer(t *testing.T) {
	b := wire(nil).str(1, "contract").msg(2, wire(nil).msg(1, entry("user", "alice")))
	req, invalid, err := rls.DecodeRequest(b)
	if err != nil || invalid != nil {
		t.Fatal(err, invalid)
	}
	for i := range b {
		b[i] = 'X'
	}
	if req.Domain != "contract" || req.Descriptors[0].Entries[0] != (ratelimit.Entry{Key: "user", Value: "alice"}) {
		t.Fatalf("request changed with the buffer: %+v", req)
	}
}

// FuzzDecodeRequest holds DecodeRequest to proto.Unmarshal + fromProto.
func FuzzDecodeRequest(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b, err := proto.Marshal(randomMessage(r))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	g := wireGen{r}
	for range 20 {
		f.Add(g.request())
	}
	f.Add([]byte{0x0a, 0x01, 0xff})
	f.Add([]byte{0x9b, 0x06, 0x9c, 0x06})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

// TestUnmarshalWireSplit: a message grpc-go hands over in several buffers
// (a large one, read in frames) decodes as the same message in one.
func TestUnmarshalWireSplit(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 200 {
		m := randomMessage(r)
		m.Domain = "contract"
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var whole, split rls.Call
		if err := whole.UnmarshalWire(mem.BufferSlice{mem.SliceBuffer(b)}); err != nil {
			t.Fatal(err)
		}
		var parts mem.BufferSlice
		for rest := b; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(7))
			parts = append(parts, mem.SliceBuffer(rest[:n]))
			rest = rest[n:]
		}
		if err := split.UnmarshalWire(parts); err != nil {
			t.Fatal(err)
		}
		wantReq, wantInvalid := whole.Decoded()
		gotReq, gotInvalid := split.Decoded()
		if !reflect.DeepEqual(gotReq, wantReq) || fmt.Sprint(gotInvalid) != fmt.Sprint(wantInvalid) {
			t.Fatalf("split %d ways: %+v %v, whole: %+v %v", len(parts), gotReq, gotInvalid, wantReq, wantInvalid)
		}
	}
	var c rls.Call
	if err := c.UnmarshalWire(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a}), mem.SliceBuffer([]byte{0x05, 'a'})}); !errors.Is(err, rls.ErrMalformed) {
		t.Fatalf("truncated message in two buffers: %v, want ErrMalformed", err)
	}
}

// TestDecodeRequestBoundedMemory: a request refused for its size (more
// than 64 descriptors, more than 32 entries in one) costs the decoder
// no memory in proportion to how far past the bound it goes. Two bytes
// on the wire (an empty descriptor or entry) must not become a 32-56
// byte record each: a 1 MiB request of them made 121 MB of garbage
// (proto.Unmarshal made 69 MB), so a few concurrent ones could exhaust
// the server's memory. The bytes past the bound are still read, so a
// wire error or invalid UTF-8 there is still found.
func TestDecodeRequestBoundedMemory(t *testing.T) {
	const size = 1 << 20
	manyDescriptors := wire(nil).str(1, "contract")
	for len(manyDescriptors) < size {
		manyDescriptors = append(manyDescriptors, 0x12, 0x00) // an empty descriptor
	}
	var entries []byte
	for len(entries) < size {
		entries = append(entries, 0x0a, 0x00) // an empty entry
	}
	manyEntries := wire(nil).str(1, "contract").msg(2, entries)
	manyEntriesThenMore := manyEntries.msg(2, wire(nil).msg(1, entry("user", "a")))
	tests := []struct {
		name string
		give wire
		want string
	}{
		{"empty descriptors", manyDescriptors, "invalid"},
		{"empty entries", manyEntries, "invalid"},
		{"empty entries, another descriptor after", manyEntriesThenMore, "invalid"},
		{"empty descriptors, then invalid UTF-8", manyDescriptors.msg(2, wire(nil).msg(1, entry("\xff", "a"))), "utf8"},
		{"empty entries, then invalid UTF-8", manyEntries.msg(2, wire(nil).msg(1, entry("\xff", "a"))), "utf8"},
		{"empty descriptors, then truncated", manyDescriptors.raw(0x12, 0x05, 0x0a), "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkDecode(t, tt.give)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, invalid, err := rls.DecodeRequest(tt.give)
			runtime.ReadMemStats(&after)
			got := "ok"
			switch {
			case errors.Is(err, rls.ErrInvalidUTF8):
				got = "utf8"
			case err != nil:
				got = "malformed"
			case invalid != nil:
				got = "invalid"
			}
			if got != tt.want {
				t.Fatalf("decoded as %s (%v, %v), want %s", got, err, invalid, tt.want)
			}
			// The bound: what 64 descriptors of 33 entries need, far
			// below the message's own size.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<10 {
				t.Fatalf("decoding %d bytes allocated %d bytes, want at most 256 KiB", len(tt.give), alloc)
			}
		})
	}
}
