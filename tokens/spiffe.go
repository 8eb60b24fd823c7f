package tokens

import (
	"errors"
	"strings"
)

// SPIFFEID is a parsed SPIFFE ID: spiffe://<trust domain><path>.
type SPIFFEID struct {
	// TrustDomain is the lower-case trust domain name.
	TrustDomain string
	// Path is empty or "/" followed by segments joined by "/".
	Path string
}

// String is the ID as written.
func (id SPIFFEID) String() string { return spiffeScheme + id.TrustDomain + id.Path }

const (
	spiffeScheme = "spiffe://"
	// The SPIFFE ID standard (§2.1, §2.3) bounds a trust domain to 255
	// bytes and an ID to 2048.
	maxTrustDomainBytes = 255
	maxSPIFFEIDBytes    = 2048
)

// Reasons a SPIFFE ID is refused, for messages (verifiers report
// ErrMalformed).
var (
	errSPIFFEScheme      = errors.New(`SPIFFE ID must start with "spiffe://" (lower case)`)
	errSPIFFETrustDomain = errors.New("SPIFFE trust domain must be 1-255 of a-z 0-9 . - _ (no upper case, port, userinfo or percent-encoding)")
	errSPIFFEPath        = errors.New("SPIFFE path segments must be non-empty, not . or .., of a-z A-Z 0-9 . - _ (no query, fragment, trailing slash or percent-encoding)")
	errSPIFFETooLong     = errors.New("SPIFFE ID longer than 2048 bytes")
)

// ParseSPIFFEID parses s strictly as the SPIFFE ID standard writes it
// (and github.com/spiffe/go-spiffe/v2/spiffeid reads it without its
// back-compatibility build tag): the scheme in lower case, a trust domain of
// lower-case letters, digits, '.', '-' and '_', and a path of segments of
// letters, digits, '.', '-' and '_' with no empty, "." or ".." segment and
// no trailing slash. Nothing is normalised or unescaped: '%', '?', '#', '@'
// and ':' are refused wherever they appear, so an ID means one thing to us,
// to Envoy and to any upstream, and a percent-encoded dot segment cannot
// turn into a traversal after we matched a prefix.
func ParseSPIFFEID(s string) (SPIFFEID, error) {
	if len(s) > maxSPIFFEIDBytes {
		return SPIFFEID{}, errSPIFFETooLong
	}
	rest, ok := strings.CutPrefix(s, spiffeScheme)
	if !ok {
		return SPIFFEID{}, errSPIFFEScheme
	}
	td, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		td, path = rest[:i], rest[i:]
	}
	if !validTrustDomain(td) {
		return SPIFFEID{}, errSPIFFETrustDomain
	}
	if path != "" && !validSPIFFEPath(path) {
		return SPIFFEID{}, errSPIFFEPath
	}
	return SPIFFEID{TrustDomain: td, Path: path}, nil
}

// validTrustDomain: 1-255 bytes of a-z 0-9 . - _.
func validTrustDomain(td string) bool {
	if td == "" || len(td) > maxTrustDomainBytes {
		return false
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validSPIFFEPath: "/" seg ("/" seg)*, each seg non-empty, not "." or
// "..", of a-z A-Z 0-9 . - _.
func validSPIFFEPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// hasPathPrefix reports whether path is prefix or lies under it, segment
// by segment: /ns/pay matches /ns/pay and /ns/pay/sa/x, not /ns/payroll.
func hasPathPrefix(path, prefix string) bool {
	if prefix == "/" {
		return path != ""
	}
	return path == prefix || strings.HasPrefix(path, prefix) && path[len(prefix)] == '/'
}
