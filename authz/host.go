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
// address, and a zone in an IPv6 literal.
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
	if !upper {
		return host, nil
	}
	return asciiLower(host), nil
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

// asciiLower lower-cases ASCII letters only; s itself when it has none.
func asciiLower(s string) string {
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
