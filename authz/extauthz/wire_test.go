package extauthz_test

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// oracleDecode is what the server did before the lean decoder, and still
// does for a message registered the generated way: grpc-go's proto codec
// (through the Codec, which turns a failure into an Unreadable mark) and
// RequestFromProto.
func oracleDecode(t testing.TB, b []byte) (authz.Request, string) {
	t.Helper()
	var req authv3.CheckRequest
	if err := (extauthz.Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &req); err != nil {
		t.Fatalf("Codec.Unmarshal: %v", err)
	}
	if why, bad := extauthz.Unreadable(&req); bad {
		return authz.Request{}, why
	}
	return extauthz.RequestFromProto(&req), ""
}

// checkSame decodes b both ways and fails on any difference: the verdict,
// the reason, and every field of the Request (nil maps included).
func checkSame(t testing.TB, b []byte) {
	t.Helper()
	want, wantWhy := oracleDecode(t, b)
	got, gotWhy := extauthz.DecodeCheckRequest(b)
	if gotWhy != wantWhy {
		t.Fatalf("message %x: unreadable %q, proto.Unmarshal says %q", b, gotWhy, wantWhy)
	}
	// PlainHeaderNames is the lean decoder's promise about the names
	// (RequestFromProto never makes it): it must hold.
	if got.PlainHeaderNames {
		for k := range got.Headers {
			if !authz.PlainHeaderName(k) {
				t.Fatalf("message %x: PlainHeaderNames set with the header name %q", b, k)
			}
		}
		got.PlainHeaderNames = false
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("message %x:\n got  %#v\n want %#v", b, got, want)
	}
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wire helpers for hand-made messages.
func fBytes(num protowire.Number, v ...[]byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, bytes.Join(v, nil))
}
func fStr(num protowire.Number, s string) []byte { return fBytes(num, []byte(s)) }
func fVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}
func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// Field numbers of the captured path.
const (
	nAttributes  = 1  // CheckRequest.attributes
	nSource      = 1  // AttributeContext.source
	nDestination = 2  // AttributeContext.destination
	nRequest     = 4  // AttributeContext.request
	nContext     = 10 // AttributeContext.context_extensions
	nMetadata    = 11 // AttributeContext.metadata_context
	nHTTP        = 2  // Request.http
	nID          = 1
	nMethod      = 2
	nHeaders     = 3
	nPath        = 4
	nHost        = 5
	nBody        = 11
	nHeaderMap   = 13
	nAddress     = 1 // Peer.address
	nSocket      = 1 // Address.socket_address
	nPipe        = 2 // Address.pipe
	nSockAddr    = 2 // SocketAddress.address
	nPrincipal   = 4 // Peer.principal
	nCertificate = 5 // Peer.certificate
)

func httpReq(fields ...[]byte) []byte {
	return fBytes(nAttributes, fBytes(nRequest, fBytes(nHTTP, fields...)))
}
func entry(k, v string) []byte { return cat(fStr(1, k), fStr(2, v)) }

// TestDecodeCheckRequestCases pins the wire rules one by one, each against
// the proto path.
func TestDecodeCheckRequestCases(t *testing.T) {
	gateway := marshal(t, extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "POST", Host: "api.example.com",
		Path: "/api/orders?page=2#frag", RequestID: "rid-1", PeerAddress: "10.1.2.3",
		Headers:           [][2]string{{"authorization", "Bearer abc"}, {"Cookie", "a=1"}, {"cookie", "b=2"}, {"accept", "*/*"}},
		ContextExtensions: map[string]string{"route": "r1", "tier": "gold"}}))
	deepStruct := func(depth int) []byte {
		v := structpb.NewStringValue("x")
		for range depth {
			v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
		}
		return marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{MetadataContext: &corev3.Metadata{
			FilterMetadata: map[string]*structpb.Struct{"f": {Fields: map[string]*structpb.Value{"k": v}}}}}})
	}
	deepCheck := func(depth int) []byte { // nested unknown-free messages via repeated attributes? use ListValue
		return deepStruct(depth)
	}
	group := func(num protowire.Number, inner []byte, endNum protowire.Number) []byte {
		b := protowire.AppendTag(nil, num, protowire.StartGroupType)
		b = append(b, inner...)
		return protowire.AppendTag(b, endNum, protowire.EndGroupType)
	}
	cases := []struct {
		name string
		give []byte
		want string // the expected verdict, checked besides the oracle
	}{
		{"empty message", nil, ""},
		{"gateway request", gateway, ""},
		{"gateway request twice (messages merge)", cat(gateway, gateway), ""},
		{"method last wins", httpReq(fStr(nMethod, "GET"), fStr(nMethod, "DELETE")), ""},
		{"attributes merge across occurrences", cat(httpReq(fStr(nMethod, "GET")), httpReq(fStr(nPath, "/x"))), ""},
		{"field order reversed", httpReq(fStr(nPath, "/p"), fBytes(nHeaders, entry(":method", "PUT")), fStr(nHost, "h"), fStr(nID, "i")), ""},
		{"pseudo-headers fill missing fields", httpReq(fBytes(nHeaders, entry(":path", "/a?b=c#d")), fBytes(nHeaders, entry(":authority", "h.example")),
			fBytes(nHeaders, entry(":scheme", "http")), fBytes(nHeaders, entry(":method", "GET")), fBytes(nHeaders, entry("x-request-id", "rid"))), ""},
		{"duplicate header key: last wins", httpReq(fBytes(nHeaders, entry("a", "1")), fBytes(nHeaders, entry("a", "2"))), ""},
		{"case variants joined", httpReq(fBytes(nHeaders, entry("X-A", "1")), fBytes(nHeaders, entry("x-a", "2")), fBytes(nHeaders, entry("x-A", "3")),
			fBytes(nHeaders, entry("COOKIE", "c=1")), fBytes(nHeaders, entry("cookie", "d=2"))), ""},
		{"entry without key or value", httpReq(fBytes(nHeaders, fStr(2, "v")), fBytes(nHeaders, fStr(1, "k")), fBytes(nHeaders)), ""},
		{"entry fields reversed and repeated", httpReq(fBytes(nHeaders, fStr(2, "v1"), fStr(1, "k"), fStr(2, "v2"), fStr(1, "k2"))), ""},
		{"entry with unknown field", httpReq(fBytes(nHeaders, entry("k", "v"), fVarint(7, 1), fStr(9, "x"))), ""},
		{"entry key with wrong wire type is unknown", httpReq(fBytes(nHeaders, fVarint(1, 5), fStr(2, "v"))), ""},
		{"header field with wrong wire type is unknown", httpReq(fVarint(nHeaders, 3), fVarint(nMethod, 1), fStr(nPath, "/p")), ""},
		{"header_map used when headers is empty", httpReq(fBytes(nHeaderMap, fBytes(1, entry("X-B", "1")), fBytes(1, entry("x-b", "2")),
			fBytes(1, fStr(1, "raw"), fBytes(3, []byte("rawval"))), fBytes(1, fStr(1, "both"), fStr(2, "v"), fBytes(3, []byte("r"))),
			fBytes(1, entry("cookie", "a=1")), fBytes(1, entry("Cookie", "b=2")))), ""},
		{"header_map ignored when headers is set", httpReq(fBytes(nHeaders, entry("a", "1")), fBytes(nHeaderMap, fBytes(1, entry("b", "2")))), ""},
		{"header_map merges across occurrences", httpReq(fBytes(nHeaderMap, fBytes(1, entry("a", "1"))), fBytes(nHeaderMap, fBytes(1, entry("a", "2")))), ""},
		{"raw_value not UTF-8 is fine (bytes)", httpReq(fBytes(nHeaderMap, fBytes(1, fStr(1, "k"), fBytes(3, []byte{0xff, 0xfe})))), ""},
		{"context extensions, duplicates", fBytes(nAttributes, fBytes(nContext, entry("a", "1")), fBytes(nContext, entry("a", "2")), fBytes(nContext, entry("b", ""))), ""},
		{"source socket address", fBytes(nAttributes, fBytes(nSource, fBytes(nAddress, fBytes(nSocket, fStr(nSockAddr, "1.2.3.4"), fVarint(3, 443))))), ""},
		{"socket address merges", fBytes(nAttributes, fBytes(nSource, fBytes(nAddress, fBytes(nSocket, fStr(nSockAddr, "1.2.3.4")))),
			fBytes(nSource, fBytes(nAddress, fBytes(nSocket, fVarint(3, 80))))), ""},
		{"oneof: pipe replaces socket", fBytes(nAttributes, fBytes(nSource, fBytes(nAddress, fBytes(nSocket, fStr(nSockAddr, "1.2.3.4")), fBytes(nPipe, fStr(1, "/s"))))), ""},
		{"oneof: socket after pipe starts afresh", fBytes(nAttributes, fBytes(nSource, fBytes(nAddress, fBytes(nSocket, fStr(nSockAddr, "1.2.3.4")),
			fBytes(nPipe), fBytes(nSocket, fVarint(3, 1))))), ""},
		{"oneof member with wrong wire type changes nothing", fBytes(nAttributes, fBytes(nSource, fBytes(nAddress, fBytes(nSocket, fStr(nSockAddr, "1.2.3.4")),
			fVarint(nPipe, 1)))), ""},
		{"source principal and certificate", fBytes(nAttributes, fBytes(nSource, fStr(nPrincipal, "spiffe://example.org/ns/a/sa/b"), fStr(nCertificate, "-----BEGIN%20CERTIFICATE-----%0A"))), ""},
		{"source principal: last wins, across merged sources", fBytes(nAttributes, fBytes(nSource, fStr(nPrincipal, "spiffe://a/x"), fStr(nCertificate, "c1")),
			fBytes(nSource, fStr(nPrincipal, "spiffe://b/y"))), ""},
		{"source principal empty resets", fBytes(nAttributes, fBytes(nSource, fStr(nPrincipal, "spiffe://a/x")), fBytes(nSource, fStr(nPrincipal, ""))), ""},
		{"source principal with wrong wire type is unknown", fBytes(nAttributes, fBytes(nSource, fStr(nPrincipal, "spiffe://a/x"), fVarint(nPrincipal, 1))), ""},
		{"destination principal is not the source's", fBytes(nAttributes, fBytes(nDestination, fStr(nPrincipal, "spiffe://gw/x"), fStr(nCertificate, "c"))), ""},
		{"invalid UTF-8 in source principal", fBytes(nAttributes, fBytes(nSource, fStr(nPrincipal, "spiffe://a/\xff"))), extauthz.UnreadableInvalidUTF8},
		{"invalid UTF-8 in source certificate", fBytes(nAttributes, fBytes(nSource, fStr(nCertificate, "\xc3\x28"))), extauthz.UnreadableInvalidUTF8},
		{"destination address is not the peer", fBytes(nAttributes, fBytes(nDestination, fBytes(nAddress, fBytes(nSocket, fStr(nSockAddr, "9.9.9.9"))))), ""},
		{"unknown fields everywhere", cat(fVarint(5, 1), fBytes(nAttributes, fStr(99, "x"), fBytes(nRequest, fVarint(77, 1), fBytes(nHTTP, fStr(1000, "\xff"), fStr(nMethod, "GET")))),
			protowire.AppendFixed32(protowire.AppendTag(nil, 6, protowire.Fixed32Type), 7), protowire.AppendFixed64(protowire.AppendTag(nil, 8, protowire.Fixed64Type), 7)), ""},
		{"unknown group", cat(group(50, fVarint(1, 1), 50), httpReq(fStr(nMethod, "GET"))), ""},
		{"known field as group is unknown", cat(group(nAttributes, fVarint(1, 1), nAttributes), httpReq(fStr(nMethod, "GET"))), ""},
		{"group with wrong end", group(50, nil, 51), extauthz.UnreadableMalformed},
		{"unknown groups nested past protowire's limit", deepGroup(10002), extauthz.UnreadableMalformed},
		{"unknown groups nested deep but within it", deepGroup(9000), ""},
		{"lone end group", protowire.AppendTag(nil, 50, protowire.EndGroupType), extauthz.UnreadableMalformed},
		{"reserved wire type 6", protowire.AppendTag(nil, 50, 6), extauthz.UnreadableMalformed},
		{"field number 0", []byte{0x02, 0x00}, extauthz.UnreadableMalformed},
		{"field number 2^29", cat(protowire.AppendTag(nil, 1<<29, protowire.VarintType), []byte{0}), extauthz.UnreadableMalformed},
		{"largest field number", cat(protowire.AppendTag(nil, 1<<29-1, protowire.VarintType), []byte{0}), ""},
		{"truncated length", []byte{0x0a, 0x05, 0x00}, extauthz.UnreadableMalformed},
		{"truncated varint", []byte{0x28, 0x80}, extauthz.UnreadableMalformed},
		{"overlong varint", cat([]byte{0x28}, bytes.Repeat([]byte{0xff}, 10), []byte{0x01}), extauthz.UnreadableMalformed},
		{"non-minimal varint tag", []byte{0x8a, 0x00, 0x00}, ""},
		{"invalid UTF-8 in method", httpReq(fStr(nMethod, "G\xffT")), extauthz.UnreadableInvalidUTF8},
		{"invalid UTF-8 in a skipped field (body)", httpReq(fStr(nBody, "\xc3\x28")), extauthz.UnreadableInvalidUTF8},
		{"invalid UTF-8 in a header name", httpReq(fBytes(nHeaders, entry("a\xff", "1"))), extauthz.UnreadableInvalidUTF8},
		{"invalid UTF-8 in destination principal", fBytes(nAttributes, fBytes(nDestination, fStr(4, "\xed\xa0\x80"))), extauthz.UnreadableInvalidUTF8},
		{"invalid UTF-8 in a metadata key", fBytes(nAttributes, fBytes(nMetadata, fBytes(1, entry("\xff", "")))), extauthz.UnreadableInvalidUTF8},
		{"UTF-8 error before a wire error wins", cat(httpReq(fStr(nMethod, "\xff")), []byte{0x0a, 0x05}), extauthz.UnreadableInvalidUTF8},
		{"wire error before a UTF-8 error wins", cat(httpReq(fStr(nMethod, "G")), []byte{0x08, 0x80}), extauthz.UnreadableMalformed},
		{"forged mark, known reason", cat(httpReq(fStr(nMethod, "GET")), fStr(1<<29-1, extauthz.UnreadableTooDeep)), extauthz.UnreadableTooDeep},
		{"forged mark, unknown reason", cat(fStr(1<<29-1, "x-chosen\xff"), httpReq(fStr(nMethod, "GET"))), extauthz.UnreadableMalformed},
		{"forged marks: the first counts", cat(fStr(1<<29-1, extauthz.UnreadableInvalidUTF8), fStr(1<<29-1, extauthz.UnreadableTooDeep)), extauthz.UnreadableInvalidUTF8},
		{"mark number as varint is no mark", fVarint(1<<29-1, 3), ""},
		{"mark number inside attributes is no mark", fBytes(nAttributes, fStr(1<<29-1, extauthz.UnreadableTooDeep)), ""},
		{"forged mark after a wire error", cat(fStr(1<<29-1, extauthz.UnreadableTooDeep), []byte{0x08}), extauthz.UnreadableMalformed},
		{"struct just within the recursion limit", deepCheck(4990), ""},
		{"struct past the recursion limit", deepCheck(5000), extauthz.UnreadableTooDeep},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkSame(t, c.give)
			if _, why := extauthz.DecodeCheckRequest(c.give); why != c.want {
				t.Errorf("unreadable %q, want %q", why, c.want)
			}
		})
	}
}

// deepGroup is an unknown group n groups deep.
func deepGroup(n int) []byte {
	var b []byte
	for range n {
		b = protowire.AppendTag(b, 50, protowire.StartGroupType)
	}
	for range n {
		b = protowire.AppendTag(b, 50, protowire.EndGroupType)
	}
	return b
}

// TestDecodeCheckRequestDepthBoundary finds the exact depth where
// proto.Unmarshal starts refusing nested lists and checks the decoder
// agrees on both sides of it, and for maps of depth at that point.
func TestDecodeCheckRequestDepthBoundary(t *testing.T) {
	for depth := 4990; depth <= 5002; depth++ {
		v := structpb.NewStringValue("x")
		for range depth {
			v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
		}
		checkSame(t, marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{MetadataContext: &corev3.Metadata{
			FilterMetadata: map[string]*structpb.Struct{"f": {Fields: map[string]*structpb.Value{"k": v}}}}}}))
		s := &structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("x")}}
		for range depth / 2 {
			s = &structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewStructValue(s)}}
		}
		checkSame(t, marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{MetadataContext: &corev3.Metadata{
			FilterMetadata: map[string]*structpb.Struct{"f": s}}}}))
		// A wrong-typed map field at depth: protobuf-go counts the map
		// before it looks at the wire type.
		b := marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{MetadataContext: &corev3.Metadata{
			FilterMetadata: map[string]*structpb.Struct{"f": s}}}})
		checkSame(t, bytes.Replace(b, []byte{0x0a, 0x01, 0x6b}, []byte{0x08, 0x01, 0x00}, 1))
	}
}

// genMessage writes a random message of descriptor md: known fields with
// the right and wrong wire types, unknown fields, groups, repeats, map
// entries with missing, repeated and reordered parts, strings from a
// small pool (pseudo-headers, case variants, invalid UTF-8), and now and
// then a cut or a corrupted byte. Collisions are the point: the pools are
// small so repeats and merges happen.
func genMessage(r *rand.Rand, md protoreflect.MessageDescriptor, depth int) []byte {
	var b []byte
	fields := md.Fields()
	n := r.IntN(6)
	if depth > 6 {
		n = r.IntN(2)
	}
	for range n {
		if fields.Len() == 0 || r.IntN(8) == 0 {
			b = appendUnknown(r, b)
			continue
		}
		fd := fields.Get(r.IntN(fields.Len()))
		if r.IntN(16) == 0 { // wrong wire type
			b = appendWrongType(r, b, fd.Number())
			continue
		}
		start := len(b)
		b = appendField(r, b, fd, depth)
		if (fd.IsMap() || fd.IsList()) && r.IntN(24) == 0 {
			// Many entries or elements, most of them repeats of one (past
			// the decoder's dedupeAt), some new ones among them.
			first := bytes.Clone(b[start:])
			for range 40 + r.IntN(120) {
				if r.IntN(4) == 0 {
					b = appendField(r, b, fd, depth)
				} else {
					b = append(b, first...)
				}
			}
		}
	}
	if depth == 0 && r.IntN(30) == 0 { // the Codec's mark, sent by a client
		reasons := []string{extauthz.UnreadableInvalidUTF8, extauthz.UnreadableTooDeep, extauthz.UnreadableMalformed, "other"}
		b = protowire.AppendString(protowire.AppendTag(b, 1<<29-1, protowire.BytesType), reasons[r.IntN(len(reasons))])
	}
	if depth == 0 && r.IntN(12) == 0 && len(b) > 0 {
		switch r.IntN(3) {
		case 0:
			b = b[:r.IntN(len(b))]
		case 1:
			b[r.IntN(len(b))] ^= byte(1 << r.IntN(8))
		default:
			b = append(b, byte(r.IntN(256)))
		}
	}
	return b
}

// appendField appends one random value of field fd, tagged.
func appendField(r *rand.Rand, b []byte, fd protoreflect.FieldDescriptor, depth int) []byte {
	b = protowire.AppendTag(b, fd.Number(), wireTypeOf(fd))
	switch {
	case fd.Message() != nil:
		return protowire.AppendBytes(b, genMessage(r, fd.Message(), depth+1))
	case fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
		return protowire.AppendString(b, genString(r))
	case fd.Kind() == protoreflect.DoubleKind || fd.Kind() == protoreflect.Fixed64Kind:
		return protowire.AppendFixed64(b, r.Uint64())
	}
	return protowire.AppendVarint(b, r.Uint64()>>r.IntN(64))
}

func wireTypeOf(fd protoreflect.FieldDescriptor) protowire.Type {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.StringKind, protoreflect.BytesKind:
		return protowire.BytesType
	case protoreflect.DoubleKind, protoreflect.Fixed64Kind:
		return protowire.Fixed64Type
	}
	return protowire.VarintType
}

var genStrings = []string{"", "a", "A", "x-request-id", ":path", ":method", ":authority", ":scheme", "cookie", "Cookie",
	"COOKIE", "authorization", "X-Forwarded-For", "x-forwarded-for", "/p?q=1#f", "/p", "GET", "POST", "h.example",
	"https", "1.2.3.4", "\xff", "a\xc3", "é", "K", "k", "\x00", "Bearer t"}

func genString(r *rand.Rand) string {
	if r.IntN(4) == 0 {
		return genStrings[r.IntN(len(genStrings))] + genStrings[r.IntN(len(genStrings))]
	}
	return genStrings[r.IntN(len(genStrings))]
}

func appendUnknown(r *rand.Rand, b []byte) []byte {
	num := protowire.Number(14 + r.IntN(40))
	switch r.IntN(5) {
	case 0:
		return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), r.Uint64())
	case 1:
		return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), genString(r))
	case 2:
		return protowire.AppendFixed32(protowire.AppendTag(b, num, protowire.Fixed32Type), r.Uint32())
	case 3:
		b = protowire.AppendTag(b, num, protowire.StartGroupType)
		b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), 1)
		return protowire.AppendTag(b, num, protowire.EndGroupType)
	}
	return protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), r.Uint64())
}

func appendWrongType(r *rand.Rand, b []byte, num protowire.Number) []byte {
	switch r.IntN(4) {
	case 0:
		return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), r.Uint64())
	case 1:
		return protowire.AppendFixed32(protowire.AppendTag(b, num, protowire.Fixed32Type), r.Uint32())
	case 2:
		b = protowire.AppendTag(b, num, protowire.StartGroupType)
		return protowire.AppendTag(b, num, protowire.EndGroupType)
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), genString(r))
}

var checkRequestDesc = (&authv3.CheckRequest{}).ProtoReflect().Descriptor()

// TestDecodeCheckRequestRandom: 30,000 random messages over the whole
// CheckRequest schema, each decoded both ways.
func TestDecodeCheckRequestRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 2026))
	verdicts := map[string]int{}
	for range 30000 {
		b := genMessage(r, checkRequestDesc, 0)
		checkSame(t, b)
		_, why := extauthz.DecodeCheckRequest(b)
		verdicts[why]++
	}
	// The generator must reach every verdict, or it tests less than it
	// seems to.
	for _, why := range []string{"", extauthz.UnreadableInvalidUTF8, extauthz.UnreadableMalformed, extauthz.UnreadableTooDeep} {
		if verdicts[why] < 20 {
			t.Errorf("only %d random messages with verdict %q: %v", verdicts[why], why, verdicts)
		}
	}
}

// FuzzDecodeCheckRequest: any bytes decode the same both ways. The seeds
// are realistic requests and a few generated ones; the fuzzer mutates the
// wire form.
func FuzzDecodeCheckRequest(f *testing.F) {
	f.Add(marshal(f, extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "api.example.com", Path: "/api?x=1",
		RequestID: "r", Headers: [][2]string{{"authorization", "Bearer t"}, {"Cookie", "a"}, {"cookie", "b"}},
		ContextExtensions: map[string]string{"k": "v"}})))
	f.Add(marshal(f, extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "h", Path: "/",
		SourcePrincipal: "spiffe://example.org/ns/a/sa/b", SourceCertificate: "-----BEGIN%20CERTIFICATE-----%0AMII%0A"})))
	f.Add(httpReq(fBytes(nHeaderMap, fBytes(1, entry("X-B", "1")), fBytes(1, entry("x-b", "2")), fBytes(1, fStr(1, "raw"), fBytes(3, []byte("v"))))))
	// Past the decoder's dedupeAt: repeated keys, case variants, a
	// header_map of repeats.
	f.Add(httpReq(bytes.Repeat(cat(fBytes(nHeaders, entry("X-A", "1")), fBytes(nHeaders, entry("x-a", "2"))), 40), fBytes(nHeaders, entry("X-A", "3"))))
	f.Add(fBytes(nAttributes, bytes.Repeat(fBytes(nContext, entry("route", "r")), 70), fBytes(nContext, entry("k", "v"))))
	f.Add(httpReq(fBytes(nHeaderMap, bytes.Repeat(fBytes(1, entry("X-B", "1")), 70), fBytes(1, fStr(1, "x-b"), fBytes(3, []byte("v"))))))
	r := rand.New(rand.NewPCG(1, 2))
	for range 8 {
		f.Add(genMessage(r, checkRequestDesc, 0))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkSame(t, b)
	})
}

// TestWireSchemaCoversCheckRequest: the decoder's tables know every field
// under CheckRequest, and none is a group (which it would not walk).
func TestWireSchemaCoversCheckRequest(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			if fd.Kind() == protoreflect.GroupKind {
				t.Errorf("%s is a group", fd.FullName())
			}
			if fd.Message() != nil {
				walk(fd.Message())
			}
		}
		if md.ExtensionRanges().Len() > 0 {
			t.Errorf("%s has extension ranges", md.FullName())
		}
	}
	walk(checkRequestDesc)
	if len(seen) < 15 || !strings.HasPrefix(string(checkRequestDesc.FullName()), "envoy.service.auth.v3") {
		t.Fatalf("walked %d messages", len(seen))
	}
}

// TestDecodeCheckRequestPlainHeaderNames: the decoder promises plain names
// only when every name is plain; one variant spelling or override header
// among them withdraws the promise, so Decide reads the names itself.
func TestDecodeCheckRequestPlainHeaderNames(t *testing.T) {
	common := [][2]string{{"user-agent", "ua"}, {"accept", "*/*"}, {"authorization", "Bearer x"}}
	for _, c := range []struct {
		extra [2]string
		want  bool
	}{
		{[2]string{"x-forwarded-for", "203.0.113.7"}, true},
		{[2]string{"x-http-method-override", "DELETE"}, false},
		{[2]string{"x-http-method", "DELETE"}, false},
		{[2]string{"x-method-override", "DELETE"}, false},
		{[2]string{"x-original-url", "/admin"}, false},
		{[2]string{"x-rewrite-url", "/admin"}, false},
		{[2]string{"x_auth_subject", "mallory"}, false},
		{[2]string{"x-forwarded-proto", "https"}, true}, // x-, and as long as an override name
		{[2]string{"x_http_method_override", "DELETE"}, false},
	} {
		b := marshal(t, extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "h", Path: "/",
			Headers: append([][2]string{c.extra}, common...)}))
		checkSame(t, b)
		r, why := extauthz.DecodeCheckRequest(b)
		if why != "" || r.PlainHeaderNames != c.want {
			t.Errorf("with %q: PlainHeaderNames %v (%q), want %v", c.extra[0], r.PlainHeaderNames, why, c.want)
		}
	}
}

// TestDecodeSourcePeer: both decoders read the source's principal and
// certificate (and never the destination's) into the Request.
func TestDecodeSourcePeer(t *testing.T) {
	b := cat(fBytes(nAttributes, fBytes(nDestination, fStr(nPrincipal, "spiffe://gw/d"), fStr(nCertificate, "dest"))),
		marshal(t, extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "h", Path: "/",
			SourcePrincipal: "spiffe://example.org/ns/a/sa/b", SourceCertificate: "-----BEGIN%20CERTIFICATE-----%0A"})))
	lean, why := extauthz.DecodeCheckRequest(b)
	if why != "" {
		t.Fatalf("unreadable: %s", why)
	}
	full, _ := oracleDecode(t, b)
	for name, r := range map[string]authz.Request{"lean": lean, "proto": full} {
		if r.SourcePrincipal != "spiffe://example.org/ns/a/sa/b" || r.SourceCertificate != "-----BEGIN%20CERTIFICATE-----%0A" {
			t.Errorf("%s: principal %q certificate %q", name, r.SourcePrincipal, r.SourceCertificate)
		}
	}
}
