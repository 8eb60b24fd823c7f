package tokens

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Strict JOSE checks. They run before github.com/golang-jwt/jwt/v5 sees a
// token (and on the UDB ticket payload), because the library is lenient
// where an upstream that re-parses the token might read it differently from
// us, or where its arithmetic goes wrong:
//
//   - It ignores "crit" (RFC 7515 §4.1.11) and "b64" (RFC 7797), so a token
//     whose signer demands an extension we do not implement was accepted.
//   - It turns a NumericDate into time with int64(float64): for a value at or
//     beyond 2^63 seconds the conversion is implementation-defined (on amd64
//     it is math.MinInt64), so a huge nbf or iat landed far in the past and
//     passed. It also reads exp: 0 as "no exp".
//   - It decodes base64url with RawURLEncoding, which ignores CR and LF and
//     (unless told to be strict) non-zero trailing bits, so several strings
//     decode to the same bytes.
//   - It decodes JSON with encoding/json, which keeps the last of duplicate
//     member names, while other parsers keep the first.
//
// Each class has its own reason: ErrNonCanonicalEncoding, ErrDuplicateMember,
// ErrUnsupportedExtension and ErrBadNumericDate.

const (
	// maxJSONDepth bounds the nesting of arrays and objects in a JOSE
	// header, a claims set or a ticket payload; deeper is ErrMalformed.
	// It is encoding/json's own limit, so we refuse for depth exactly what
	// golang-jwt (and json.Valid) would; max_token_bytes keeps real
	// tokens far below it (8 KiB holds ~3,000 levels). Depth is not a
	// parser differential that matters: an upstream with a lower limit
	// refuses the token, it does not read it differently.
	maxJSONDepth = 10000
	// maxNumericDate is 9999-12-31T23:59:59Z, the last second with a
	// four-digit year; later NumericDates are ErrBadNumericDate.
	maxNumericDate = 253402300799
	// linearNames is how many member names an object's duplicate check
	// compares linearly before it switches to a map.
	linearNames = 16
)

// b64url maps a base64url character to its 6-bit value, others to 0xff.
var b64url = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(alphabet) {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// canonicalBase64URL reports whether s is the one encoding RFC 7515 §2 allows
// for its bytes: base64url (RFC 4648 §5) without padding, nothing but the 64
// alphabet characters (no '=', '+', '/', whitespace), a length that is not 1
// modulo 4, and zero bits where the last character encodes none (RFC 4648
// §3.5). Exactly then does decoding and re-encoding give s back.
func canonicalBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		if b64url[s[i]] == 0xff {
			return false
		}
	}
	switch len(s) % 4 {
	case 1:
		return false
	case 2: // 12 bits for one byte: the last character's low 4 bits are unused
		return b64url[s[len(s)-1]]&0x0f == 0
	case 3: // 18 bits for two bytes: the last character's low 2 bits are unused
		return b64url[s[len(s)-1]]&0x03 == 0
	}
	return true
}

// decodeSegment decodes a canonical base64url segment, or returns
// ErrNonCanonicalEncoding.
func decodeSegment(s string) ([]byte, error) {
	if !canonicalBase64URL(s) {
		return nil, ErrNonCanonicalEncoding
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil { // unreachable after canonicalBase64URL; fail closed anyway
		return nil, ErrNonCanonicalEncoding
	}
	return b, nil
}

// jwsTimes are the registered time claims of a checked claims set.
type jwsTimes struct {
	exp, nbf, iat  time.Time
	hasExp, hasIat bool
}

// checkJWS applies the strict checks to a compact JWS: three canonical
// base64url segments, a header without duplicate members, "crit" or "b64",
// and a claims set without duplicate members whose exp, nbf and iat are
// NumericDates in range. It returns those times, so that nothing reads them
// through the library's wrapping conversion.
func checkJWS(tok string) (jwsTimes, error) {
	header, rest, ok1 := strings.Cut(tok, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(sig, '.') >= 0 {
		return jwsTimes{}, ErrMalformed
	}
	if !canonicalBase64URL(header) || !canonicalBase64URL(payload) || !canonicalBase64URL(sig) {
		return jwsTimes{}, ErrNonCanonicalEncoding
	}
	h, err := decodeSegment(header)
	if err != nil {
		return jwsTimes{}, err
	}
	if err := checkJOSEHeader(h); err != nil {
		return jwsTimes{}, err
	}
	p, err := decodeSegment(payload)
	if err != nil {
		return jwsTimes{}, err
	}
	return checkClaims(p, false)
}

// checkJOSEHeader checks a decoded JOSE header. We implement no JWS
// extension, so a "crit" member in any form is ErrUnsupportedExtension: a
// well-formed one names something we do not understand, and a malformed one
// (not an array of strings, empty, naming a registered or absent parameter)
// is invalid by RFC 7515 §4.1.11 itself. "b64" is refused whatever its value
// and with or without crit: a JWT's payload is always the base64url-encoded
// claims set (RFC 7519 §7.2), so b64:false cannot be a JWT, and RFC 7797 §6
// requires b64 to be listed in crit, which we refuse anyway.
func checkJOSEHeader(data []byte) error {
	ext := false
	err := walkJSON(data, func(name, _ []byte) error {
		if string(name) == "crit" || string(name) == "b64" {
			ext = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if ext {
		return ErrUnsupportedExtension
	}
	return nil
}

// checkClaims checks a decoded claims set (or ticket payload) and reads its
// exp, nbf and iat. integral requires them to be written as JSON integers
// (digits only), as the ticket format does; RFC 7519 allows fractions, which
// are truncated to the second as github.com/golang-jwt/jwt/v5 does.
func checkClaims(data []byte, integral bool) (jwsTimes, error) {
	var t jwsTimes
	err := walkJSON(data, func(name, raw []byte) error {
		var dst *time.Time
		switch string(name) {
		case "exp":
			dst, t.hasExp = &t.exp, true
		case "nbf":
			dst = &t.nbf
		case "iat":
			dst, t.hasIat = &t.iat, true
		case "jti", "sid":
			// Revocation records name them as strings (RFC 7519
			// 4.1.7: jti is a string): one written in another JSON
			// type could never be revoked by them.
			if len(raw) == 0 || raw[0] != '"' {
				return ErrMalformed
			}
			return nil
		default:
			return nil
		}
		v, ok := numericDate(raw, integral)
		if !ok {
			return ErrBadNumericDate
		}
		*dst = v
		return nil
	})
	return t, err
}

// numericDate reads the raw JSON value of a time claim (RFC 7519 §2): a
// non-negative number of seconds since the epoch, at most maxNumericDate.
// Strings, null, booleans, arrays, objects, a minus sign and values out of
// range (including those a float64 cannot hold) are refused. The result is
// computed without any conversion that could wrap.
func numericDate(raw []byte, integral bool) (time.Time, bool) {
	if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' {
		return time.Time{}, false // not a number, or a negative one
	}
	digits := true
	for _, c := range raw {
		if c < '0' || c > '9' {
			digits = false
			break
		}
	}
	if digits {
		// JSON has no leading zeros, so more than 12 digits is out of
		// range; 12 digits fit an int64 with room to spare.
		if len(raw) > len("253402300799") {
			return time.Time{}, false
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil || n > maxNumericDate {
			return time.Time{}, false
		}
		return time.Unix(n, 0), true
	}
	if integral {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	// ParseFloat reports overflow (±Inf) as an error and reads underflow
	// as 0; the comparison would also refuse NaN, which JSON cannot spell.
	if err != nil || !(f >= 0 && f <= maxNumericDate) {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true // 0 <= f < 2^38: no wrap
}

// nameSet holds the member names of one object, compared after unescaping:
// the first linearNames in an array on the walker's stack (no allocation
// for the usual small object), then in a map.
type nameSet struct {
	buf [linearNames][]byte
	n   int
	set map[string]struct{}
}

// add records a member name and reports whether it is new.
func (s *nameSet) add(name []byte) bool {
	if s.set == nil {
		for _, m := range s.buf[:s.n] {
			if bytes.Equal(m, name) {
				return false
			}
		}
		if s.n < linearNames {
			s.buf[s.n] = name
			s.n++
			return true
		}
		s.set = make(map[string]struct{}, 2*linearNames)
		for _, m := range s.buf[:s.n] {
			s.set[string(m)] = struct{}{}
		}
	}
	if _, dup := s.set[string(name)]; dup {
		return false
	}
	s.set[string(name)] = struct{}{}
	return true
}

// walkJSON checks that data is one JSON object in valid UTF-8, nested at
// most maxJSONDepth deep, with no trailing data and no escaped unpaired
// surrogate in any string (else ErrMalformed), and
// with no duplicate member names in any object at any depth, compared after
// unescaping (else ErrDuplicateMember). Nested objects count too: they reach
// Principal.Claims and upstream headers, and an upstream that re-parses the
// token must not read another value than we did. For each top-level member it
// calls member with the unescaped name and the raw JSON text of the value;
// an error from member ends the walk. Time and memory are linear in
// len(data). member must not keep name or raw.
func walkJSON(data []byte, member func(name, raw []byte) error) error {
	// encoding/json would silently turn invalid UTF-8 into U+FFFD, so
	// the signed bytes and the value we act on would differ. Checking the
	// syntax of the whole text first makes a broken document malformed
	// even where a duplicate or a bad date comes before the break, and
	// lets the walk below trust the syntax.
	if !utf8.Valid(data) || !json.Valid(data) {
		return ErrMalformed
	}
	w := jsonWalk{data: data}
	w.space()
	if w.i >= len(data) || data[w.i] != '{' {
		return ErrMalformed
	}
	return w.object(1, member)
}

// jsonWalk walks text that json.Valid accepted, so it only needs to find
// where each token ends.
type jsonWalk struct {
	data []byte
	i    int
}

func (w *jsonWalk) space() {
	for w.i < len(w.data) {
		switch w.data[w.i] {
		case ' ', '\t', '\r', '\n':
			w.i++
		default:
			return
		}
	}
}

// value walks the value at w.i, inside depth open containers.
func (w *jsonWalk) value(depth int) error {
	switch w.data[w.i] {
	case '{':
		return w.object(depth+1, nil)
	case '[':
		if depth+1 > maxJSONDepth {
			return ErrMalformed
		}
		w.i++
		w.space()
		if w.data[w.i] == ']' {
			w.i++
			return nil
		}
		for {
			w.space()
			if err := w.value(depth + 1); err != nil {
				return err
			}
			w.space()
			c := w.data[w.i]
			w.i++ // ',' or ']'
			if c == ']' {
				return nil
			}
		}
	case '"':
		if _, ok := w.str(); !ok {
			return ErrMalformed
		}
	default: // number, true, false, null
		for w.i < len(w.data) {
			switch w.data[w.i] {
			case ',', ']', '}', ' ', '\t', '\r', '\n':
				return nil
			}
			w.i++
		}
	}
	return nil
}

// str skips the string at w.i and returns its text with the quotes. ok is
// false when an escape spells half of a UTF-16 surrogate pair ("\ud800"
// alone, or a low half first): encoding/json turns each such escape into
// U+FFFD, so "bob\ud800" and "bob\udbff" would be one subject to us and
// two to a parser that keeps them (Java, JavaScript, Python), and RFC 8259
// 8.2 calls their meaning unpredictable.
func (w *jsonWalk) str() (text []byte, ok bool) {
	start := w.i
	w.i++
	ok = true
	for {
		switch w.data[w.i] {
		case '\\':
			if w.data[w.i+1] != 'u' {
				w.i += 2
				continue
			}
			// json.Valid guarantees four hex digits and a closing quote.
			r := hex4(w.data[w.i+2 : w.i+6])
			w.i += 6
			switch {
			case r < 0xd800 || r > 0xdfff:
			case r < 0xdc00 && w.data[w.i] == '\\' && w.data[w.i+1] == 'u' && isLowSurrogate(hex4(w.data[w.i+2:w.i+6])):
				w.i += 6
			default:
				ok = false
			}
		case '"':
			w.i++
			return w.data[start:w.i], ok
		default:
			w.i++
		}
	}
}

func isLowSurrogate(r rune) bool { return r >= 0xdc00 && r <= 0xdfff }

// hex4 reads the four hex digits of a \u escape (checked by json.Valid).
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// object walks the object at w.i, which is the depth-th open container.
func (w *jsonWalk) object(depth int, member func(name, raw []byte) error) error {
	if depth > maxJSONDepth {
		return ErrMalformed
	}
	w.i++
	w.space()
	if w.data[w.i] == '}' {
		w.i++
		return nil
	}
	var names nameSet
	for {
		w.space()
		name, ok := w.str()
		if !ok {
			return ErrMalformed
		}
		if bytes.IndexByte(name, '\\') < 0 {
			name = name[1 : len(name)-1]
		} else {
			var s string
			if json.Unmarshal(name, &s) != nil {
				return ErrMalformed
			}
			name = []byte(s)
		}
		if !names.add(name) {
			return ErrDuplicateMember
		}
		w.space()
		w.i++ // ':'
		w.space()
		start := w.i
		if err := w.value(depth); err != nil {
			return err
		}
		if member != nil {
			if err := member(name, w.data[start:w.i]); err != nil {
				return err
			}
		}
		w.space()
		c := w.data[w.i]
		w.i++ // ',' or '}'
		if c == '}' {
			return nil
		}
	}
}
