package ratelimit

import (
	"strconv"
	"strings"
	"time"
)

// Header is one response header (lower-case name).
type Header struct {
	Name, Value string
}

// HeaderOptions choose the header families Headers renders.
type HeaderOptions struct {
	// Draft renders the IETF httpapi draft headers RateLimit-Policy and
	// RateLimit.
	Draft bool
	// Legacy renders X-RateLimit-Limit, -Remaining and -Reset (seconds).
	Legacy bool
}

// Headers renders the rate-limit response headers of r: Retry-After when
// over the limit (the longest wait among the descriptors over an enforced
// limit), and the chosen families for the one limit envoyproxy/ratelimit
// would report (Reported). It returns nil when no limit applied.
func (r *Result) Headers(o HeaderOptions) []Header {
	st := r.pick()
	if st == nil {
		return nil
	}
	lm := st.Limit
	reset := ceilSeconds(st.ResetAfter)
	var out []Header
	if r.Code == OverLimit {
		out = append(out, Header{"retry-after", strconv.FormatInt(ceilSeconds(max(r.retryAfter(), st.ResetAfter)), 10)})
	}
	if o.Draft {
		name := sfString(lm.Policy)
		out = append(out,
			Header{"ratelimit-policy", policyHeader(st)},
			Header{"ratelimit", name + ";r=" + strconv.FormatUint(uint64(st.Remaining), 10) + ";t=" + strconv.FormatInt(reset, 10)},
		)
	}
	if o.Legacy {
		out = append(out,
			Header{"x-ratelimit-limit", strconv.FormatUint(uint64(lm.Requests), 10)},
			Header{"x-ratelimit-remaining", strconv.FormatUint(uint64(st.Remaining), 10)},
			Header{"x-ratelimit-reset", strconv.FormatInt(reset, 10)},
		)
	}
	return out
}

func ceilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return s
}

// sfString renders s as a structured-field string (RFC 8941): quoted, with
// quotes and backslashes escaped and anything outside printable ASCII
// replaced by '_'.
func sfString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('_')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
