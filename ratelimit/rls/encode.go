package rls

import (
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// Field numbers of envoy.service.ratelimit.v3.RateLimitResponse and the
// messages in it that the service sets.
const (
	respOverallCode = 1 // Code
	respStatuses    = 2 // repeated DescriptorStatus
	respHeaders     = 3 // repeated config.core.v3.HeaderValue

	statusCode           = 1 // Code
	statusCurrentLimit   = 2 // RateLimit
	statusLimitRemaining = 3 // uint32
	statusDuration       = 4 // google.protobuf.Duration

	limitRequestsPerUnit = 1 // uint32
	limitUnit            = 2 // Unit
	limitName            = 3 // string

	durationSeconds = 1 // int64
	durationNanos   = 2 // int32

	headerKey   = 1 // string
	headerValue = 2 // string
)

// The response's enum numbers (RateLimitResponse.Code and
// RateLimitResponse.RateLimit.Unit).
const (
	codeOK        = 1
	codeOverLimit = 2
)

// unitNumber is toProto's units map as a switch: 0 (UNKNOWN, left out on
// the wire) for a unit the map does not have.
func unitNumber(u ratelimit.Unit) uint64 {
	switch u {
	case ratelimit.Second:
		return 1
	case ratelimit.Minute:
		return 2
	case ratelimit.Hour:
		return 3
	case ratelimit.Day:
		return 4
	case ratelimit.Week:
		return 7
	case ratelimit.Month:
		return 5
	case ratelimit.Year:
		return 6
	}
	return 0
}

// AppendResponse appends the RateLimitResponse that toProto makes of res
// (for a request of n descriptors) in its wire form, byte for byte what a
// deterministic proto.Marshal of that message writes (fields in number
// order, zero values left out), without building the message. res.Code
// must not be Unavailable (that answer is a gRPC error, not a response).
// The differential tests (encode_test.go) hold it to toProto +
// proto.Marshal.
func AppendResponse(b []byte, res *ratelimit.Result, n int, headers bool) []byte {
	overall := uint64(codeOK)
	if res.Code == ratelimit.OverLimit {
		overall = codeOverLimit
	}
	b = protowire.AppendTag(b, respOverallCode, protowire.VarintType)
	b = protowire.AppendVarint(b, overall)
	if res.Failed {
		// Every descriptor the overall code, no limit known.
		for range n {
			b = protowire.AppendTag(b, respStatuses, protowire.BytesType)
			b = append(b, 2) // the status's length: its code, 2 bytes
			b = protowire.AppendTag(b, statusCode, protowire.VarintType)
			b = protowire.AppendVarint(b, overall)
		}
		return b
	}
	for i := range n {
		b = appendStatus(b, &res.Statuses[i])
	}
	if headers {
		b = appendHeaders(b, res)
	}
	return b
}

// wireStatus is a DescriptorStatus's fields as toProto sets them.
type wireStatus struct {
	code      uint64
	remaining uint32
	limit     *ratelimit.Limit // current_limit, when set
	unit      uint64
	seconds   int64
	nanos     int32
}

func statusOf(st *ratelimit.Status) wireStatus {
	ws := wireStatus{code: codeOK, remaining: st.Remaining}
	if st.Code == ratelimit.OverLimit {
		ws.code = codeOverLimit
	}
	if lm := st.Limit; lm != nil {
		if lm.Unlimited {
			ws.remaining = math.MaxUint32
		} else {
			ws.limit = lm
			ws.unit = unitNumber(lm.Unit)
			// As durationpb.New does it.
			nanos := (time.Duration(ceilSeconds(st.ResetAfter)) * time.Second).Nanoseconds()
			ws.seconds = nanos / 1e9
			ws.nanos = int32(nanos - ws.seconds*1e9)
		}
	}
	return ws
}

func sizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func sizeStringField(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func (ws *wireStatus) limitSize() int {
	return sizeVarintField(uint64(ws.limit.Requests)) + sizeVarintField(ws.unit) + sizeStringField(ws.limit.Name)
}

func (ws *wireStatus) durationSize() int {
	return sizeVarintField(uint64(ws.seconds)) + sizeVarintField(uint64(int64(ws.nanos)))
}

func (ws *wireStatus) size() int {
	n := sizeVarintField(ws.code) + sizeVarintField(uint64(ws.remaining))
	if ws.limit != nil {
		n += 1 + protowire.SizeBytes(ws.limitSize()) + 1 + protowire.SizeBytes(ws.durationSize())
	}
	return n
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendStatus(b []byte, st *ratelimit.Status) []byte {
	ws := statusOf(st)
	b = protowire.AppendTag(b, respStatuses, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ws.size()))
	b = appendVarintField(b, statusCode, ws.code)
	if ws.limit != nil {
		b = protowire.AppendTag(b, statusCurrentLimit, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(ws.limitSize()))
		b = appendVarintField(b, limitRequestsPerUnit, uint64(ws.limit.Requests))
		b = appendVarintField(b, limitUnit, ws.unit)
		b = appendStringField(b, limitName, ws.limit.Name)
	}
	b = appendVarintField(b, statusLimitRemaining, uint64(ws.remaining))
	if ws.limit != nil {
		b = protowire.AppendTag(b, statusDuration, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(ws.durationSize()))
		b = appendVarintField(b, durationSeconds, uint64(ws.seconds))
		b = appendVarintField(b, durationNanos, uint64(int64(ws.nanos)))
	}
	return b
}

// appendHeaders appends envoyHeaders' headers.
func appendHeaders(b []byte, res *ratelimit.Result) []byte {
	i := res.Reported()
	if i < 0 {
		return b
	}
	best := &res.Statuses[i]
	var num [20]byte
	b = appendHeader(b, "RateLimit-Limit", strconv.AppendUint(num[:0], uint64(best.Limit.Requests), 10))
	b = appendHeader(b, "RateLimit-Remaining", strconv.AppendUint(num[:0], uint64(best.Remaining), 10))
	return appendHeader(b, "RateLimit-Reset", strconv.AppendInt(num[:0], ceilSeconds(best.ResetAfter), 10))
}

func appendHeader(b []byte, key string, value []byte) []byte {
	size := sizeStringField(key)
	if len(value) > 0 {
		size += 1 + protowire.SizeBytes(len(value))
	}
	b = protowire.AppendTag(b, respHeaders, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = appendStringField(b, headerKey, key)
	if len(value) > 0 {
		b = protowire.AppendTag(b, headerValue, protowire.BytesType)
		b = protowire.AppendBytes(b, value)
	}
	return b
}
