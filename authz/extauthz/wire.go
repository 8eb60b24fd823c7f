package extauthz

import (
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ext-authz/ext-authz/authz"
)

// DecodeCheckRequest reads a serialized CheckRequest straight into the
// authz.Request that RequestFromProto would make of proto.Unmarshal's
// message, without building the message: no map per header, no object per
// address, one allocation for all the strings it keeps. It accepts and
// refuses exactly what proto.Unmarshal (grpc-go's codec) does: it walks
// every field, checks UTF-8 in every proto3 string, counts nesting the way
// protobuf-go does and stops at its recursion limit. When proto.Unmarshal
// would fail, why is one of the Unreadable* reasons the Codec gives for
// that failure, and the Request is empty.
//
// The differential tests (wire_test.go) hold it to that against
// go-control-plane's messages.
func DecodeCheckRequest(b []byte) (r authz.Request, why string) {
	d := decoders.Get().(*wireDecoder)
	defer d.release()
	d.buf = b
	// proto.Unmarshal starts at protowire.DefaultRecursionLimit and takes
	// one for the CheckRequest itself.
	if why := d.message(0, len(b), checkRequestSchema, protowire.DefaultRecursionLimit-1, nil); why != "" {
		return authz.Request{}, why
	}
	if d.marked {
		// The client sent the Codec's own mark (see Unreadable): the
		// generated path refuses that request, and so does this one.
		return authz.Request{}, markReason(d.buf[d.mark.off : d.mark.off+d.mark.n])
	}
	return d.request(), ""
}

// markReason is the reason Unreadable reads from a mark's value.
func markReason(v []byte) string {
	for _, r := range unreadableReasons {
		if string(v) == r {
			return r
		}
	}
	return UnreadableMalformed
}

// span is where a kept string lies: in the message while decoding, in the
// arena once collected.
type span struct{ off, n int }

// wireEntry is a map entry (key, value) or a HeaderValue (key, value,
// raw_value) being read.
type wireEntry struct{ key, value, raw span }

// keptHeader is a HeaderValue as kept: its name and the value that
// counts (value, or raw_value when value is empty).
type keptHeader struct{ key, value span }

// The oneof member Address holds, for the source's address.
const (
	addrUnset uint8 = iota
	addrSocket
	addrOther
)

type wireDecoder struct {
	buf []byte

	id, method, path, host, scheme, peer span
	principal, certificate               span
	addrCase                             uint8
	// A map field, even one with the wrong wire type, makes its map:
	// protobuf-go allocates it before it looks at the entry.
	headersSeen, contextSeen bool

	headers entries // HttpRequest.headers entries
	context entries // context_extensions entries
	// HeaderMap.headers, in wire order, while headers has no entry (the
	// header_map counts only then).
	headerMap []keptHeader

	// The first unknown field of the CheckRequest with the Codec's mark
	// number (see markUnreadable), if any.
	mark   span
	marked bool
}

// decoders keeps decoders with their entry slices grown, so a decode
// allocates only what the Request keeps.
var decoders = sync.Pool{New: func() any { return new(wireDecoder) }}

// maxPooledEntries bounds the entries a pooled decoder keeps room for:
// a message with thousands of headers is not worth keeping room for.
const maxPooledEntries = 256

func (d *wireDecoder) release() {
	keep := func(es []wireEntry) []wireEntry {
		if cap(es) > maxPooledEntries {
			return nil
		}
		return es[:0]
	}
	hm := d.headerMap[:0]
	if cap(hm) > maxPooledEntries {
		hm = nil
	}
	*d = wireDecoder{headers: entries{es: keep(d.headers.es)}, context: entries{es: keep(d.context.es)}, headerMap: hm}
	decoders.Put(d)
}

// message walks the fields of one message (or map entry) in buf[i:end].
// depth is what is left of the recursion limit after entering it; e
// receives the fields of a map entry or HeaderValue.
//
// The checks and their order are protobuf-go's (internal/impl decode.go,
// codec_map.go): a tag's number must be 1..2^29-1 and not end a group; a
// field whose wire type is not the one its kind expects is an unknown
// field, consumed whole; a map takes one from the depth before its wire
// type is looked at, a message after its length is read.
func (d *wireDecoder) message(i, end int, m *wireMsg, depth int, e *wireEntry) string {
	b := d.buf[:end]
	for i < end {
		tag, n := protowire.ConsumeVarint(b[i:])
		if n < 0 {
			return UnreadableMalformed
		}
		i += n
		num := tag >> 3
		if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
			return UnreadableMalformed
		}
		typ := protowire.Type(tag & 7)
		if typ == protowire.EndGroupType {
			return UnreadableMalformed
		}
		if num == uint64(unreadableField) && typ == protowire.BytesType && m == checkRequestSchema && !d.marked {
			v, n := protowire.ConsumeBytes(b[i:])
			if n < 0 {
				return UnreadableMalformed
			}
			d.mark, d.marked = span{off: i + n - len(v), n: len(v)}, true
		}
		var why string
		if i, why = d.field(b, i, m.field(protowire.Number(num)), protowire.Number(num), typ, depth, e); why != "" {
			return why
		}
	}
	return ""
}

// field consumes one field's value at b[i:] and returns where the next
// field starts.
func (d *wireDecoder) field(b []byte, i int, f *wireField, num protowire.Number, typ protowire.Type, depth int, e *wireEntry) (int, string) {
	if f.kind == wireMap {
		switch f.capture {
		case capHeaders:
			d.headersSeen = true
		case capContext:
			d.contextSeen = true
		}
		if depth--; depth < 0 {
			return i, UnreadableTooDeep
		}
	}
	if typ != protowire.BytesType || (f.kind == wireOther && f.capture != capRaw) {
		n := protowire.ConsumeFieldValue(num, typ, b[i:])
		if n < 0 {
			return i, UnreadableMalformed
		}
		return i + n, ""
	}
	v, n := protowire.ConsumeBytes(b[i:])
	if n < 0 {
		return i, UnreadableMalformed
	}
	start := i + n - len(v)
	i += n
	sp := span{off: start, n: len(v)}
	switch f.kind {
	case wireOther: // raw_value: bytes, kept as they are
		if e != nil {
			e.raw = sp
		}
	case wireString:
		if !utf8.Valid(v) {
			return i, UnreadableInvalidUTF8
		}
		d.keep(f.capture, sp, e)
	case wireMessage:
		if depth--; depth < 0 {
			return i, UnreadableTooDeep
		}
		switch f.capture {
		case capSocketAddress:
			// A oneof member merges into itself and replaces another.
			if d.addrCase != addrSocket {
				d.peer, d.addrCase = span{}, addrSocket
			}
		case capOtherAddress:
			d.addrCase = addrOther
		case capHeaderValue:
			var hv wireEntry
			if why := d.message(start, i, f.msg, depth, &hv); why != "" {
				return i, why
			}
			// The header_map counts only when headers has no entry,
			// and an entry is never taken back: once there is one,
			// the header_map is only read.
			if len(d.headers.es) == 0 {
				if hv.value.n == 0 {
					hv.value = hv.raw
				}
				d.headerMap = appendDoubling(d.headerMap, keptHeader{key: hv.key, value: hv.value})
			}
			return i, ""
		}
		return i, d.message(start, i, f.msg, depth, nil)
	case wireMap:
		var ent wireEntry
		if why := d.message(start, i, f.msg, depth, &ent); why != "" {
			return i, why
		}
		switch f.capture {
		case capHeaders:
			d.headers.add(d.buf, ent)
			d.headerMap = d.headerMap[:0]
		case capContext:
			d.context.add(d.buf, ent)
		}
	}
	return i, ""
}

// entries are a map field's entries: what proto.Unmarshal keeps of
// them, the last value of each key. A map field's entries are 2 bytes
// each on the wire at the least (an empty entry), and a map keeps one
// value per key however many entries repeat it: recording every entry
// made a 1 MiB request of repeated keys cost 165 MB where
// proto.Unmarshal made 1 KB. So past dedupeAt entries an index by key
// keeps one entry per key, the last, and the list grows only with the
// distinct keys, as proto.Unmarshal's map does.
type entries struct {
	es  []wireEntry
	idx map[string]int // key → its entry in es, once es passed dedupeAt
}

// dedupeAt is how many entries are recorded as they come before the
// index is built: more than any gateway sends, so a normal request
// never pays for it.
const dedupeAt = 64

// add records ent, a complete entry whose spans are in buf.
func (l *entries) add(buf []byte, ent wireEntry) {
	if l.idx == nil {
		if len(l.es) < dedupeAt {
			l.es = appendDoubling(l.es, ent)
			return
		}
		l.idx = make(map[string]int, len(l.es))
		w := 0
		for _, e := range l.es {
			if j, ok := l.idx[string(buf[e.key.off:e.key.off+e.key.n])]; ok {
				l.es[j] = e // the same key: the later value wins
				continue
			}
			l.idx[string(buf[e.key.off:e.key.off+e.key.n])] = w
			l.es[w] = e
			w++
		}
		l.es = l.es[:w]
	}
	k := buf[ent.key.off : ent.key.off+ent.key.n]
	if j, ok := l.idx[string(k)]; ok {
		l.es[j] = ent
		return
	}
	l.idx[string(k)] = len(l.es)
	l.es = appendDoubling(l.es, ent)
}

// appendDoubling is append that doubles a full slice's capacity however
// long it is: append grows a long slice by a quarter, so a list of n
// elements allocated about 5n of them on the way, 2n this way.
func appendDoubling[T any](s []T, v T) []T {
	if len(s) == cap(s) {
		grown := make([]T, len(s), 2*len(s)+8)
		copy(grown, s)
		s = grown
	}
	return append(s, v)
}

// keep records a kept string field: the last occurrence wins.
func (d *wireDecoder) keep(c capture, sp span, e *wireEntry) {
	switch c {
	case capID:
		d.id = sp
	case capMethod:
		d.method = sp
	case capPath:
		d.path = sp
	case capHost:
		d.host = sp
	case capScheme:
		d.scheme = sp
	case capPeer:
		d.peer = sp
	case capSourcePrincipal:
		d.principal = sp
	case capSourceCertificate:
		d.certificate = sp
	case capKey:
		if e != nil {
			e.key = sp
		}
	case capValue:
		if e != nil {
			e.value = sp
		}
	}
}

// copySpan appends a kept string to the arena and points sp at it there.
func (d *wireDecoder) copySpan(sb *strings.Builder, sp *span) {
	if sp.n == 0 {
		sp.off = 0
		return
	}
	off := sb.Len()
	sb.Write(d.buf[sp.off : sp.off+sp.n])
	sp.off = off
}

func (d *wireDecoder) copyEntries(sb *strings.Builder, es []wireEntry) {
	for i := range es {
		d.copySpan(sb, &es[i].key)
		d.copySpan(sb, &es[i].value)
		d.copySpan(sb, &es[i].raw)
	}
}

func str(arena string, sp span) string { return arena[sp.off : sp.off+sp.n] }

// request builds the authz.Request from what message kept, as
// RequestFromProto does from the message.
func (d *wireDecoder) request() authz.Request {
	// header_map counts only when headers is empty: field keeps none
	// of it once headers has an entry.
	useHeaderMap := len(d.headerMap) > 0
	n := d.id.n + d.method.n + d.path.n + d.host.n + d.scheme.n + d.principal.n + d.certificate.n
	if d.addrCase == addrSocket {
		n += d.peer.n
	} else {
		d.peer = span{}
	}
	for _, e := range d.headers.es {
		n += e.key.n + e.value.n
	}
	for _, e := range d.context.es {
		n += e.key.n + e.value.n
	}
	for _, e := range d.headerMap {
		n += e.key.n + e.value.n
	}
	// All kept strings in one allocation, copied: the message's buffer
	// goes back to grpc-go's pool.
	var sb strings.Builder
	sb.Grow(n)
	d.copySpan(&sb, &d.id)
	d.copySpan(&sb, &d.method)
	d.copySpan(&sb, &d.path)
	d.copySpan(&sb, &d.host)
	d.copySpan(&sb, &d.scheme)
	d.copySpan(&sb, &d.peer)
	d.copySpan(&sb, &d.principal)
	d.copySpan(&sb, &d.certificate)
	d.copyEntries(&sb, d.headers.es)
	d.copyEntries(&sb, d.context.es)
	for i := range d.headerMap {
		d.copySpan(&sb, &d.headerMap[i].key)
		d.copySpan(&sb, &d.headerMap[i].value)
	}
	arena := sb.String()

	var headers map[string]string
	plain := false // every name authz.PlainHeaderName, checked as it is added
	switch {
	case len(d.headers.es) > 0:
		headers = make(map[string]string, len(d.headers.es))
		upper := false
		plain = true
		for _, e := range d.headers.es {
			k := str(arena, e.key)
			upper = upper || hasUpperASCII(k)
			plain = plain && authz.PlainHeaderName(k)
			headers[k] = str(arena, e.value)
		}
		if upper {
			headers = lowerHeaders(headers)
			plain = false
		}
	case useHeaderMap:
		headers = joinHeaderMap(len(d.headerMap), func(i int) (string, string) {
			return str(arena, d.headerMap[i].key), str(arena, d.headerMap[i].value)
		})
	case d.headersSeen:
		headers = map[string]string{}
	}
	var ctx map[string]string
	if d.contextSeen {
		ctx = make(map[string]string, len(d.context.es))
		for _, e := range d.context.es {
			ctx[str(arena, e.key)] = str(arena, e.value)
		}
	}
	r := newRequest(requestFields{
		id: str(arena, d.id), method: str(arena, d.method), path: str(arena, d.path), host: str(arena, d.host),
		scheme: str(arena, d.scheme), peer: str(arena, d.peer),
		principal: str(arena, d.principal), certificate: str(arena, d.certificate),
	}, headers, ctx)
	r.PlainHeaderNames = plain
	return r
}
