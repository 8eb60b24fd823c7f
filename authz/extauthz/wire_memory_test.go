package extauthz_test

import (
	"bytes"
	"runtime"
	"strconv"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// allocated is how many bytes f allocates on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// repeatTo repeats unit until the result holds at least size bytes.
func repeatTo(unit []byte, size int) []byte {
	return bytes.Repeat(unit, (size+len(unit)-1)/len(unit))
}

// distinctTo concatenates mk(0), mk(1), ... until size bytes.
func distinctTo(mk func(i int) []byte, size int) []byte {
	var b []byte
	for i := 0; len(b) < size; i++ {
		b = append(b, mk(i)...)
	}
	return b
}

// TestDecodeCheckRequestBoundedMemory: the lean decoder allocates no
// more, in proportion, than proto.Unmarshal does for the same bytes (the
// path it replaced), whatever the client puts in a map or repeated
// field. A map keeps one value per key: 1 MiB of empty or duplicate
// entries (2 bytes each on the wire) made a 48-byte record each and a
// map sized for all of them, 165 MB where proto.Unmarshal made 50 KB.
// The bytes after the repeats are still read, so an error there is
// still found as proto.Unmarshal finds it.
func TestDecodeCheckRequestBoundedMemory(t *testing.T) {
	const size = 1 << 20
	// context builds a CheckRequest whose attributes are body and tail
	// (context_extensions entries, tagged).
	context := func(body []byte, tail ...[]byte) []byte {
		return fBytes(nAttributes, body, cat(tail...))
	}
	ctxEntry := func(k, v string) []byte { return fBytes(nContext, entry(k, v)) }
	hdrEntry := func(k, v string) []byte { return fBytes(nHeaders, entry(k, v)) }
	hmValue := func(k, v string) []byte { return fBytes(1, entry(k, v)) }
	hmRaw := func(k, raw string) []byte { return fBytes(1, fStr(1, k), fStr(3, raw)) }

	emptyHeaders := repeatTo([]byte{0x1a, 0x00}, size)
	dupHeaders := repeatTo(hdrEntry("x-a", "v"), size)
	caseHeaders := repeatTo(cat(hdrEntry("X-A", "1"), hdrEntry("x-a", "2"), hdrEntry("x-A", "3")), size)
	distinctHeaders := distinctTo(func(i int) []byte { return hdrEntry("h"+strconv.Itoa(i), "v") }, size)
	// Distinct keys, each sent twice in a row.
	pairHeaders := distinctTo(func(i int) []byte {
		k := "h" + strconv.Itoa(i)
		return cat(hdrEntry(k, "1"), hdrEntry(k, "2"))
	}, size)

	emptyContext := repeatTo([]byte{0x52, 0x00}, size)
	dupContext := repeatTo(ctxEntry("route", "r"), size)
	distinctContext := distinctTo(func(i int) []byte { return ctxEntry("k"+strconv.Itoa(i), "v") }, size)

	emptyValues := repeatTo([]byte{0x0a, 0x00}, size)
	dupValues := repeatTo(hmValue("x-a", "v"), size)
	dupRaw := repeatTo(hmRaw("X-A", "r"), size)
	distinctValues := distinctTo(func(i int) []byte { return hmValue("h"+strconv.Itoa(i), "v") }, size)

	tests := []struct {
		name string
		give []byte
		want string
	}{
		{"headers: empty entries", httpReq(emptyHeaders), ""},
		{"headers: one key repeated", httpReq(dupHeaders), ""},
		{"headers: case variants repeated", httpReq(caseHeaders), ""},
		{"headers: distinct keys", httpReq(distinctHeaders), ""},
		{"headers: distinct keys twice each", httpReq(pairHeaders), ""},
		{"headers: repeated, then a new key", httpReq(dupHeaders, hdrEntry("authorization", "Bearer t")), ""},
		{"headers: repeated, then invalid UTF-8", httpReq(dupHeaders, hdrEntry("x-b", "\xff")), extauthz.UnreadableInvalidUTF8},
		{"headers: empty entries, then truncated", cat(httpReq(emptyHeaders), []byte{0x0a, 0x05, 0x22}), extauthz.UnreadableMalformed},
		{"headers: empty entries, then a header_map", httpReq(emptyHeaders, fBytes(nHeaderMap, dupValues)), ""},
		{"context: empty entries", context(emptyContext), ""},
		{"context: one key repeated", context(dupContext), ""},
		{"context: distinct keys", context(distinctContext), ""},
		{"context: repeated, then invalid UTF-8", context(dupContext, ctxEntry("\xff", "v")), extauthz.UnreadableInvalidUTF8},
		{"context: repeated, then truncated", cat(context(dupContext), []byte{0x0a, 0x03, 0x52, 0x05}), extauthz.UnreadableMalformed},
		{"header_map: empty values", httpReq(fBytes(nHeaderMap, emptyValues)), ""},
		{"header_map: one name repeated", httpReq(fBytes(nHeaderMap, dupValues)), ""},
		{"header_map: raw values repeated", httpReq(fBytes(nHeaderMap, dupRaw)), ""},
		{"header_map: distinct names", httpReq(fBytes(nHeaderMap, distinctValues)), ""},
		{"header_map: repeated, then headers", httpReq(fBytes(nHeaderMap, dupValues), hdrEntry("x-b", "1")), ""},
		{"header_map: repeated, then invalid UTF-8", httpReq(fBytes(nHeaderMap, dupValues, hmValue("x-b", "\xff"))), extauthz.UnreadableInvalidUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkSame(t, tt.give)
			if _, why := extauthz.DecodeCheckRequest(tt.give); why != tt.want {
				t.Fatalf("unreadable %q, want %q", why, tt.want)
			}
			ref := allocated(func() {
				var req authv3.CheckRequest
				_ = proto.Unmarshal(tt.give, &req)
			})
			got := allocated(func() { extauthz.DecodeCheckRequest(tt.give) })
			t.Logf("lean %d B, proto.Unmarshal %d B", got, ref)
			if limit := 2*ref + 64<<10; got > limit {
				t.Errorf("the lean decoder allocated %d B for %d B, proto.Unmarshal %d B: more than %d B",
					got, len(tt.give), ref, limit)
			}
		})
	}
}
