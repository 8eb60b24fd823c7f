package authz

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"
)

// Reasons for refusing a path (400). Both are safe to show the client.
var (
	// ErrInvalidPath: the path is malformed (not origin-form, a bad or
	// control-character escape, invalid UTF-8) or holds an encoded slash
	// that the policy does not allow.
	ErrInvalidPath = errors.New("invalid_path")
	// ErrAmbiguousPath: mainstream upstreams would resolve the path to
	// different resources (a backslash, a '#', an encoded ';', a double
	// encoding, a path parameter that hides a dot segment, a ".." that
	// climbs over an empty segment), so no rule decision is safe.
	ErrAmbiguousPath = errors.New("ambiguous_path")
)

// CanonicalPath returns the form of an origin-form request path (without
// the query) that rules match: the path an upstream serves after decoding
// and resolving it. See docs/request-normalisation.md for the rules and why
// each is safe. In short:
//
//   - every percent-encoded octet is decoded (RFC 3986 2.3 and 6.2.2.2 for
//     the unreserved ones; the others too, because upstreams decode them
//     and a rule must not be evaded by spelling "!" as "%21"), except the
//     ones whose decoding would change the path's structure: %25, %3F and
//     %23 stay encoded (in upper case), %2F and %5C are refused unless
//     allowEncodedSlashes (then they stay encoded, upper case), %3B is
//     refused;
//   - decoded control characters and invalid UTF-8 (also when it arrived
//     percent-encoded, such as the overlong "/" %C0%AF) are refused;
//   - dot segments are removed as RFC 3986 5.2.4 does, with the trailing
//     slash a final "." or ".." leaves, and then empty segments are merged
//     away (as Envoy's merge_slashes does after its RFC normalisation);
//   - a raw '\', a '#', a double encoding (%25 followed by two hex digits
//     once decoded), a segment that is "", "." or ".." once its ";"
//     parameters are stripped, and a ".." that removes an empty segment
//     where that changes the result ("/a//.." is "/a/" to RFC 3986 and
//     "/" to merge-first upstreams) are refused as ambiguous.
//
// A path that is already canonical is returned without allocating.
func CanonicalPath(p string, allowEncodedSlashes bool) (string, error) {
	if p == "" || p[0] != '/' {
		// Absolute-form ("http://h/x"), asterisk-form and relative targets:
		// Envoy answers them itself (404) before ext_authz, so they reach us
		// only from a client that bypasses the gateway.
		return "", ErrInvalidPath
	}
	if isCleanPath(p) {
		return p, nil
	}
	return canonicalPathSlow(p, allowEncodedSlashes)
}

// isCleanPath reports whether p is canonical as it is: no escapes, no
// characters that need a decision, no empty or dot segments, valid UTF-8.
func isCleanPath(p string) bool {
	ascii := true
	for i := 0; i < len(p); i++ {
		switch cleanPathChars[p[i]] {
		case cpOK:
		case cpSlash:
			if i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
				return false
			}
		case cpHigh:
			ascii = false
		default:
			return false
		}
	}
	return ascii || utf8.ValidString(p)
}

// The classes of cleanPathChars: a byte that may stay as it is, '/', a
// non-ASCII byte (valid UTF-8 may stay), and a byte that needs the slow
// path (controls, '%', '\', '#', ';', '?').
const (
	cpOK = iota
	cpSlash
	cpHigh
	cpSlow
)

var cleanPathChars = func() (t [256]byte) {
	for c := range t {
		switch {
		case c < 0x20 || c == 0x7f || c == '%' || c == '\\' || c == '#' || c == ';' || c == '?':
			t[c] = cpSlow
		case c == '/':
			t[c] = cpSlash
		case c >= 0x80:
			t[c] = cpHigh
		}
	}
	return t
}()

func canonicalPathSlow(p string, allowEncoded bool) (string, error) {
	// Decode into buf, one segment after another; segs holds each
	// segment's end offset in buf.
	buf := make([]byte, 0, len(p))
	segs := make([]int, 0, 8)
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			segs = append(segs, len(buf))
			continue
		case c < 0x20 || c == 0x7f || c == '?':
			// A '?' belongs to the query, which the caller split off.
			return "", ErrInvalidPath
		case c == '\\' || c == '#':
			// '\' is a '/' to Envoy's normaliser, IIS and some frameworks,
			// and a plain character to most others; '#' starts a fragment
			// to some and is literal to others.
			return "", ErrAmbiguousPath
		case c != '%':
			buf = append(buf, c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", ErrInvalidPath
		}
		v := unhex(p[i+1])<<4 | unhex(p[i+2])
		i += 2
		switch v {
		case '/', '\\':
			if !allowEncoded {
				return "", ErrInvalidPath
			}
			buf = appendEscaped(buf, v)
		case '%', '?', '#':
			buf = appendEscaped(buf, v)
		case ';':
			// Servlet containers split path parameters before decoding, so
			// "%3B" is data to them and a delimiter to a decode-first
			// upstream.
			return "", ErrAmbiguousPath
		default:
			if v < 0x20 || v == 0x7f {
				return "", ErrInvalidPath
			}
			buf = append(buf, v)
		}
	}
	segs = append(segs, len(buf))
	// Checked on every decoded segment, not only on what survives dot
	// removal: an upstream that reads it differently resolves differently.
	// Segment by segment, because buf holds them without their '/': as
	// one string "/%CC/%95" would read as the valid "\u0315", and "/%25/41"
	// as the double encoding "%2541".
	from := 0
	for _, to := range segs {
		seg := buf[from:to]
		from = to
		if !utf8.Valid(seg) {
			return "", ErrInvalidPath
		}
		if hasDoubleEncoding(seg) {
			return "", ErrAmbiguousPath
		}
	}

	// Resolve dot segments over the decoded segments (RFC 3986 5.2.4 on a
	// stack) keeping empty segments, and, on a second stack, as upstreams
	// that merge slashes first do (nginx, Go's path.Clean). The two part
	// ways only when a ".." climbs over an empty segment ("/a//.."); then
	// the path is ambiguous.
	type span struct{ from, to int }
	out := make([]span, 0, len(segs))
	merged := make([]span, 0, len(segs))
	trailing, diverged := false, false
	from = 0
	for k, to := range segs {
		seg := buf[from:to]
		s := span{from, to}
		from = to
		last := k == len(segs)-1
		if err := checkParams(seg); err != nil {
			return "", err
		}
		switch {
		case isDots(seg, 1):
			trailing = last
		case isDots(seg, 2):
			if n := len(out); n > 0 {
				diverged = diverged || out[n-1].from == out[n-1].to
				out = out[:n-1]
			}
			if n := len(merged); n > 0 {
				merged = merged[:n-1]
			}
			trailing = last
		default:
			out = append(out, s)
			if len(seg) > 0 {
				merged = append(merged, s)
			}
			trailing = last && len(seg) == 0
		}
	}
	res := make([]byte, 0, len(buf)+len(segs)+1)
	n := 0
	for _, s := range out {
		if s.from == s.to {
			continue
		}
		if diverged && (n >= len(merged) || merged[n] != s) {
			return "", ErrAmbiguousPath
		}
		n++
		res = append(res, '/')
		res = append(res, buf[s.from:s.to]...)
	}
	if diverged && n != len(merged) {
		return "", ErrAmbiguousPath
	}
	if len(res) == 0 || trailing {
		res = append(res, '/')
	}
	return string(res), nil
}

// checkParams refuses a segment whose parameters (";..."), once stripped
// as servlet containers strip them, leave "", "." or "..": "/admin/..;/x"
// is "/admin/..;/x" to Envoy and most upstreams, and "/x" to Tomcat.
func checkParams(seg []byte) error {
	i := bytes.IndexByte(seg, ';')
	if i < 0 {
		return nil
	}
	if base := seg[:i]; len(base) == 0 || isDots(base, 1) || isDots(base, 2) {
		return ErrAmbiguousPath
	}
	return nil
}

func isDots(seg []byte, n int) bool {
	if len(seg) != n {
		return false
	}
	for _, c := range seg {
		if c != '.' {
			return false
		}
	}
	return true
}

// hasDoubleEncoding reports a decoded '%' (kept as "%25") followed by two
// hex digits: an upstream that decodes twice would see another character.
func hasDoubleEncoding(p []byte) bool {
	for i := 0; i+4 < len(p); i++ {
		if p[i] == '%' && p[i+1] == '2' && p[i+2] == '5' && isHex(p[i+3]) && isHex(p[i+4]) {
			return true
		}
	}
	return false
}

// stripPathParams removes the ";..." parameters from every segment of a
// canonical path, as servlet containers do ("/a;x/b;y" is "/a/b").
func stripPathParams(p string) string {
	if strings.IndexByte(p, ';') < 0 {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for p != "" {
		i := strings.IndexByte(p, ';')
		if i < 0 {
			b.WriteString(p)
			break
		}
		b.WriteString(p[:i])
		p = p[i:]
		j := strings.IndexByte(p, '/')
		if j < 0 {
			break
		}
		p = p[j:]
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

func appendEscaped(b []byte, v byte) []byte {
	return append(b, '%', upperHex[v>>4], upperHex[v&0xf])
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
