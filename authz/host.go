package authz

import (
	"errors"
	"net/netip"
	"strings"
)

// ErrInvalidHost is the reason for refusing an :authority (400).
var ErrInvalidHost = errors.New("invalid_host")

// CanonicalHost returns the host of an :authority as rules match it:
//
//   - ASCII letters folded to lower case, and nothing else folded (as Envoy
//     does: strings.ToLower would fold the Kelvin sign "K" (U+212A) to "k");
//   - no port: a numeric port (or an empty one) is dropped;
//   - one trailing dot dropped ("example.com." is the same DNS name as
//     "example.com", and nginx serves both from one server block);
//   - IPv6 literals kept in brackets, in their RFC 5952 text form.
//
// It refuses an empty host, a non-ASCII host (internationalised names
// arrive as punycode, "xn--..."), characters other than letters, digits,
// '-', '_' and '.', empty labels, a non-numeric port, an unbracketed IPv6
// address, a zone in an IPv6 literal, and a host whose last label is a
// number but that is not an IPv4 address in dotted-decimal form ("127.1",
// "0x7f.0.0.1", "010.0.0.1", "1.2.3.4.5").
func CanonicalHost(authority string) (string, error) {
	host, port := authority, ""
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return "", ErrInvalidHost
		}
		host, port = authority[:end+1], authority[end+1:]
		if port != "" {
			if port[0] != ':' {
				return "", ErrInvalidHost
			}
			port = port[1:]
		}
		if !validPort(port) {
			return "", ErrInvalidHost
		}
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", ErrInvalidHost
		}
		return "[" + a.String() + "]", nil
	}
	if i := strings.IndexByte(authority, ':'); i >= 0 {
		host, port = authority[:i], authority[i+1:]
		if !validPort(port) { // also refuses a second ':' (an unbracketed IPv6 address)
			return "", ErrInvalidHost
		}
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return "", ErrInvalidHost
	}
	upper := false
	prev := byte('.')
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c >= 'A' && c <= 'Z':
			upper = true
		case c == '.':
			if prev == '.' {
				return "", ErrInvalidHost // empty label
			}
		default:
			return "", ErrInvalidHost
		}
		prev = c
	}
	if prev == '.' {
		return "", ErrInvalidHost // "a.b..": an empty last label
	}
	if numericLastLabel(host) {
		// WHATWG URL parsers (Node's URL, browsers) and inet_aton read a
		// host whose last label is a number as an IPv4 address in any of
		// its forms ("0x7f.1", "127.1", "2130706433", "0177.0.0.1" are
		// 127.0.0.1), where rules and Envoy read a name. Only the one
		// dotted-decimal form is a host both readings agree on.
		if a, err := netip.ParseAddr(host); err != nil || !a.Is4() {
			return "", ErrInvalidHost
		}
	}
	if !upper {
		return host, nil
	}
	return ASCIILower(host), nil
}

// numericLastLabel reports whether the last label of host is a number as
// the WHATWG URL standard's "ends in a number" sees it: decimal digits, or
// "0x"/"0X" and hex digits (none at all included).
func numericLastLabel(host string) bool {
	label := host[strings.LastIndexByte(host, '.')+1:]
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		for i := 2; i < len(label); i++ {
			if !isHex(label[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(label); i++ {
		if label[i] < '0' || label[i] > '9' {
			return false
		}
	}
	return label != ""
}

func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}

// ASCIILower lower-cases ASCII letters only, as Envoy's LowerCaseString
// does; s itself when it has none. strings.ToLower would also fold "K"
// (U+212A KELVIN SIGN) to "k", and so read a header or host Envoy treats
// as a different one. The transports use it for header names.
func ASCIILower(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
