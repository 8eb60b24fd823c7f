package rls

import (
	"errors"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// Why DecodeRequest refuses a message that proto.Unmarshal also refuses.
// protobuf-go's own texts vary on purpose (its "proto:" prefix uses a
// random kind of space), so only these two kinds are promised.
var (
	// ErrMalformed: not a valid RateLimitRequest in the wire format
	// (truncated, a bad tag, an end-group tag outside a group, ...).
	ErrMalformed = errors.New("proto: cannot parse invalid wire-format data")
	// ErrInvalidUTF8: a string field holds invalid UTF-8, which proto3
	// strings may not.
	ErrInvalidUTF8 = errors.New("proto: string field contains invalid UTF-8")
)

// Field numbers of the messages the decoder reads
// (envoy.service.ratelimit.v3.RateLimitRequest and
// envoy.extensions.common.ratelimit.v3.RateLimitDescriptor).
const (
	fieldDomain      = 1 // string
	fieldDescriptors = 2 // repeated RateLimitDescriptor
	fieldHitsAddend  = 3 // uint32

	fieldEntries        = 1 // repeated Entry
	fieldLimit          = 2 // RateLimitOverride
	fieldDescHitsAddend = 3 // google.protobuf.UInt64Value
	fieldIsNegativeHits = 4 // bool

	fieldKey   = 1 // Entry.key, string
	fieldValue = 2 // Entry.value, string

	fieldRequestsPerUnit = 1 // RateLimitOverride.requests_per_unit, uint32
	fieldUnit            = 2 // RateLimitOverride.unit, enum
	fieldUnitMultiplier  = 3 // RateLimitOverride.unit_multiplier, UInt32Value

	fieldWrapperValue = 1 // UInt64Value.value / UInt32Value.value
)

// span is where a string lies in the message.
type span struct{ off, n int }

type wireEntry struct{ key, value span }

// wireDescriptor is a RateLimitDescriptor as read: its entries are
// d.entries[first : first+n] (a descriptor is read whole before the next
// one starts, so its entries are contiguous).
type wireDescriptor struct {
	first, n int

	limitSet bool // the limit override was present (even empty)
	requests uint32
	unit     int32

	hitsSet  bool // hits_addend was present (even empty)
	hits     uint64
	negative bool
}

type wireDecoder struct {
	buf     []byte
	domain  span
	hits    uint32
	descs   []wireDescriptor
	entries []wireEntry
}

var decoders = sync.Pool{New: func() any { return new(wireDecoder) }}

// maxPooled bounds the room a pooled decoder keeps: a request with
// thousands of descriptors is not worth keeping room for.
const maxPooled = 256

func (d *wireDecoder) release() {
	descs, entries := d.descs[:0], d.entries[:0]
	if cap(descs) > maxPooled {
		descs = nil
	}
	if cap(entries) > maxPooled {
		entries = nil
	}
	*d = wireDecoder{descs: descs, entries: entries}
	decoders.Put(d)
}

// DecodeRequest reads a serialized RateLimitRequest straight into the
// ratelimit.Request that fromProto makes of proto.Unmarshal's message,
// without building the message: one allocation for all its strings, one
// for the descriptors, one for their entries.
//
// A wire error (ErrMalformed, ErrInvalidUTF8) is returned exactly when
// proto.Unmarshal (grpc-go's codec) fails: it walks every field, checks
// UTF-8 in every proto3 string, treats a known field with the wrong wire
// type as an unknown one, lets the last of a repeated scalar win, merges
// repeated occurrences of a singular message and consumes unknown fields
// (groups too) with protowire as protobuf-go does. Otherwise invalid is
// fromProto's error for a request the service refuses (empty domain, no
// descriptors, too many, is_negative_hits), and nil for a good one.
//
// The differential tests (wire_test.go, FuzzDecodeRequest) hold it to
// proto.Unmarshal + fromProto on go-control-plane's messages.
func DecodeRequest(b []byte) (req ratelimit.Request, invalid, wireErr error) {
	d := decoders.Get().(*wireDecoder)
	defer d.release()
	d.buf = b
	// The deepest known message is three below the request (request,
	// descriptor, entry / override / wrapper), far from protobuf-go's
	// recursion limit of 10,000; unknown groups are consumed by
	// protowire.ConsumeFieldValue with its own limit, as protobuf-go does.
	if err := d.request(); err != nil {
		return ratelimit.Request{}, nil, err
	}
	req, invalid = d.build()
	return req, invalid, nil
}

// tag reads a field's tag at b[i:] with protobuf-go's checks: a number in
// 1..2^29-1, and no end-group tag outside a group.
func tag(b []byte, i int) (protowire.Number, protowire.Type, int, error) {
	v, n := protowire.ConsumeVarint(b[i:])
	if n < 0 {
		return 0, 0, i, ErrMalformed
	}
	num := v >> 3
	if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
		return 0, 0, i, ErrMalformed
	}
	typ := protowire.Type(v & 7)
	if typ == protowire.EndGroupType {
		return 0, 0, i, ErrMalformed
	}
	return protowire.Number(num), typ, i + n, nil
}

// skip consumes a field the decoder does not keep (unknown, or known
// with another wire type than its kind's).
func skip(b []byte, i int, num protowire.Number, typ protowire.Type) (int, error) {
	n := protowire.ConsumeFieldValue(num, typ, b[i:])
	if n < 0 {
		return i, ErrMalformed
	}
	return i + n, nil
}

// bytesField reads a length-delimited value at b[i:] and returns its span
// and where the next field starts.
func bytesField(b []byte, i int) (span, int, error) {
	v, n := protowire.ConsumeBytes(b[i:])
	if n < 0 {
		return span{}, i, ErrMalformed
	}
	return span{off: i + n - len(v), n: len(v)}, i + n, nil
}

func varintField(b []byte, i int) (uint64, int, error) {
	v, n := protowire.ConsumeVarint(b[i:])
	if n < 0 {
		return 0, i, ErrMalformed
	}
	return v, i + n, nil
}

func (d *wireDecoder) str(b []byte, i int) (span, int, error) {
	sp, i, err := bytesField(b, i)
	if err == nil && !utf8.Valid(b[sp.off:sp.off+sp.n]) {
		err = ErrInvalidUTF8
	}
	return sp, i, err
}

func (d *wireDecoder) request() error {
	b := d.buf
	for i := 0; i < len(b); {
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		switch {
		case num == fieldDomain && typ == protowire.BytesType:
			d.domain, i, err = d.str(b, i)
		case num == fieldDescriptors && typ == protowire.BytesType:
			var sp span
			if sp, i, err = bytesField(b, i); err == nil {
				if len(d.descs) > maxDescriptors {
					// The request is refused for its size; what is past
					// the bound is only read, for a wire error in it.
					var scratch wireDescriptor
					err = d.descriptor(b[:sp.off+sp.n], sp.off, &scratch, false)
					break
				}
				d.descs = append(d.descs, wireDescriptor{first: len(d.entries)})
				err = d.descriptor(b[:sp.off+sp.n], sp.off, &d.descs[len(d.descs)-1], true)
			}
		case num == fieldHitsAddend && typ == protowire.VarintType:
			var v uint64
			v, i, err = varintField(b, i)
			d.hits = uint32(v)
		default:
			i, err = skip(b, i, num, typ)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// descriptor reads a descriptor from b[i:] into wd; its entries are
// appended to d.entries when keep is set, and only while it has no more
// than maxEntries of them. A request past either bound is refused for
// its size (build), so nothing past it is kept: a bound on the memory a
// request costs, however many empty descriptors or entries it sends.
func (d *wireDecoder) descriptor(b []byte, i int, wd *wireDescriptor, keep bool) error {
	for i < len(b) {
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		switch {
		case num == fieldEntries && typ == protowire.BytesType:
			var sp span
			if sp, i, err = bytesField(b, i); err == nil {
				var e wireEntry
				if err = d.entry(b[:sp.off+sp.n], sp.off, &e); err == nil && keep && wd.n <= maxEntries {
					// wd.n stops at maxEntries+1: enough for build to
					// refuse the request.
					d.entries = append(d.entries, e)
					wd.n++
				}
			}
		case num == fieldLimit && typ == protowire.BytesType:
			var sp span
			if sp, i, err = bytesField(b, i); err == nil {
				// A singular message seen again merges into the first.
				wd.limitSet = true
				err = d.override(b[:sp.off+sp.n], sp.off, wd)
			}
		case num == fieldDescHitsAddend && typ == protowire.BytesType:
			var sp span
			if sp, i, err = bytesField(b, i); err == nil {
				wd.hitsSet = true
				err = wrapper(b[:sp.off+sp.n], sp.off, &wd.hits)
			}
		case num == fieldIsNegativeHits && typ == protowire.VarintType:
			var v uint64
			v, i, err = varintField(b, i)
			wd.negative = v != 0
		default:
			i, err = skip(b, i, num, typ)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *wireDecoder) entry(b []byte, i int, e *wireEntry) error {
	for i < len(b) {
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		switch {
		case num == fieldKey && typ == protowire.BytesType:
			e.key, i, err = d.str(b, i)
		case num == fieldValue && typ == protowire.BytesType:
			e.value, i, err = d.str(b, i)
		default:
			i, err = skip(b, i, num, typ)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *wireDecoder) override(b []byte, i int, wd *wireDescriptor) error {
	for i < len(b) {
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		switch {
		case num == fieldRequestsPerUnit && typ == protowire.VarintType:
			var v uint64
			v, i, err = varintField(b, i)
			wd.requests = uint32(v)
		case num == fieldUnit && typ == protowire.VarintType:
			var v uint64
			v, i, err = varintField(b, i)
			wd.unit = int32(v) // protobuf-go keeps an enum's low 32 bits
		case num == fieldUnitMultiplier && typ == protowire.BytesType:
			// Not used (fromProto ignores it), but read as protobuf-go
			// reads it: a malformed one fails the request.
			var sp span
			if sp, i, err = bytesField(b, i); err == nil {
				var v uint64
				err = wrapper(b[:sp.off+sp.n], sp.off, &v)
			}
		default:
			i, err = skip(b, i, num, typ)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// wrapper reads a UInt64Value or UInt32Value (field 1, a varint; the
// caller narrows a UInt32Value's).
func wrapper(b []byte, i int, v *uint64) error {
	for i < len(b) {
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		if num == fieldWrapperValue && typ == protowire.VarintType {
			*v, i, err = varintField(b, i)
		} else {
			i, err = skip(b, i, num, typ)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// build makes the ratelimit.Request, refusing what fromProto refuses, in
// the same order.
func (d *wireDecoder) build() (ratelimit.Request, error) {
	switch {
	case d.domain.n == 0:
		return ratelimit.Request{}, errEmptyDomain
	case len(d.descs) == 0:
		return ratelimit.Request{}, errNoDescriptors
	case len(d.descs) > maxDescriptors:
		return ratelimit.Request{}, errTooManyDescriptors
	}
	for i := range d.descs {
		wd := &d.descs[i]
		if wd.n > maxEntries {
			return ratelimit.Request{}, errTooManyEntries
		}
		if wd.negative {
			return ratelimit.Request{}, errNegativeHits
		}
	}
	// All strings in one allocation, copied: the message's buffer goes
	// back to grpc-go's pool.
	n := d.domain.n
	for _, e := range d.entries {
		n += e.key.n + e.value.n
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.Write(d.buf[d.domain.off : d.domain.off+d.domain.n])
	for _, e := range d.entries {
		sb.Write(d.buf[e.key.off : e.key.off+e.key.n])
		sb.Write(d.buf[e.value.off : e.value.off+e.value.n])
	}
	arena := sb.String()
	domain := arena[:d.domain.n]
	off := d.domain.n
	next := func(n int) string {
		s := arena[off : off+n]
		off += n
		return s
	}

	req := ratelimit.Request{Domain: domain, Descriptors: make([]ratelimit.Descriptor, len(d.descs))}
	var entries []ratelimit.Entry
	if len(d.entries) > 0 {
		entries = make([]ratelimit.Entry, len(d.entries))
	}
	for i, e := range d.entries {
		entries[i] = ratelimit.Entry{Key: next(e.key.n), Value: next(e.value.n)}
	}
	hits := uint64(max(1, d.hits))
	for i := range d.descs {
		wd := &d.descs[i]
		rd := &req.Descriptors[i]
		if wd.n > 0 {
			rd.Entries = entries[wd.first : wd.first+wd.n : wd.first+wd.n]
		} else {
			// fromProto makes an empty, non-nil slice.
			rd.Entries = []ratelimit.Entry{}
		}
		rd.Hits = hits
		if wd.hitsSet {
			rd.Hits = wd.hits // 0 checks without counting
		}
		if wd.limitSet {
			rd.Override = overrideLimit(domain, rd.Entries, wd.requests, wd.unit)
		}
	}
	return req, nil
}
