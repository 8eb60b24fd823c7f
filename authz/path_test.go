package authz_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ext-authz/ext-authz/authz"
)

// The adversarial table for the canonicaliser: several cases per class.
// Each wantErr is the reason a client gets (400).
func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		give         string
		allowEncoded bool
		want         string
		wantErr      error
	}{
		// Already canonical: returned as is.
		{give: "/", want: "/"},
		{give: "/admin/x", want: "/admin/x"},
		{give: "/a-b_c~d.e/f!$&'()*+,=:@", want: "/a-b_c~d.e/f!$&'()*+,=:@"},
		{give: "/caf\u00e9", want: "/caf\u00e9"},

		// Class: percent-encoded unreserved characters are the characters.
		{give: "/%61dmin", want: "/admin"},
		{give: "/%41DMIN/%7e%5F%2D", want: "/ADMIN/~_-"},
		{give: "/adm%69n/", want: "/admin/"},
		{give: "/%2e%2E/admin", want: "/admin"},
		// ...and so are other encoded characters an upstream decodes.
		{give: "/a%21b", want: "/a!b"},
		{give: "/a%20b", want: "/a b"},
		{give: "/caf%C3%A9", want: "/caf\u00e9"},
		{give: "/caf%c3%a9", want: "/caf\u00e9"},
		// ...except the structural ones, kept encoded in upper case.
		{give: "/a%3fb", want: "/a%3Fb"},
		{give: "/a%23b", want: "/a%23b"},
		{give: "/100%25", want: "/100%25"},
		{give: "/a%2fb", allowEncoded: true, want: "/a%2Fb"},
		{give: "/a%5cb", allowEncoded: true, want: "/a%5Cb"},

		// Class: dot segments, exactly RFC 3986 5.2.4.
		{give: "/admin/x/..", want: "/admin/"},
		{give: "/admin/x/%2e%2e", want: "/admin/"},
		{give: "/admin/.", want: "/admin/"},
		{give: "/admin/%2E", want: "/admin/"},
		{give: "/admin/x/../", want: "/admin/"},
		{give: "/public/../admin", want: "/admin"},
		{give: "/public/./../admin/./x", want: "/admin/x"},
		{give: "/../../admin", want: "/admin"},
		{give: "/a/..", want: "/"},
		{give: "/..", want: "/"},
		{give: "/.../x", want: "/.../x"},
		{give: "/..x/.x/x..", want: "/..x/.x/x.."},
		{give: "/%2e%2e%2e", want: "/..."},
		{give: "/.well-known/x", want: "/.well-known/x"},

		// Class: slashes merged.
		{give: "//admin//x//", want: "/admin/x/"},
		{give: "//", want: "/"},
		{give: "/a//b/../c", want: "/a/c"},

		// Class: a ".." over an empty segment: "/a//.." is "/a/" to RFC
		// 3986 and "/" to merge-first upstreams (nginx, Go's path.Clean).
		{give: "/admin//..", wantErr: authz.ErrAmbiguousPath},
		{give: "/admin/x//../..", wantErr: authz.ErrAmbiguousPath},
		{give: "/admin//%2e%2e/x", wantErr: authz.ErrAmbiguousPath},

		// Class: invalid UTF-8, raw or percent-encoded.
		{give: "/public/\xff", wantErr: authz.ErrInvalidPath},
		{give: "/public/..\xc0\xafadmin", wantErr: authz.ErrInvalidPath},
		{give: "/public/%c0%af", wantErr: authz.ErrInvalidPath},
		{give: "/%C0%AE%C0%AE/admin", wantErr: authz.ErrInvalidPath},
		{give: "/%e0%80%af", wantErr: authz.ErrInvalidPath},
		{give: "/%ed%a0%80", wantErr: authz.ErrInvalidPath}, // a surrogate
		{give: "/caf%C3", wantErr: authz.ErrInvalidPath},
		// ...also when a '/' splits a sequence that would be valid
		// without it (the segments are decoded into one buffer).
		{give: "/\xcc/\x95", wantErr: authz.ErrInvalidPath},
		{give: "/%CC/%95", wantErr: authz.ErrInvalidPath},
		{give: "/caf%C3/%A9", wantErr: authz.ErrInvalidPath},
		{give: "/%E2%82/%AC/x", wantErr: authz.ErrInvalidPath},
		{give: "/%F0%9F/%98%80", wantErr: authz.ErrInvalidPath},
		{give: "/%F0/%9F%98/%80", wantErr: authz.ErrInvalidPath},
		{give: "/x/\xe2\x82/\xac", wantErr: authz.ErrInvalidPath},
		{give: "/%C3//%A9", wantErr: authz.ErrInvalidPath},
		{give: "/%C3/./%A9", wantErr: authz.ErrInvalidPath},
		{give: "/%E2%82%AC/%F0%9F%98%80", want: "/\u20ac/\U0001f600"},

		// Class: control characters, raw or encoded; malformed escapes.
		{give: "/a\x00b", wantErr: authz.ErrInvalidPath},
		{give: "/a%00b", wantErr: authz.ErrInvalidPath},
		{give: "/a%0d%0aX-Auth-Subject:%20root", wantErr: authz.ErrInvalidPath},
		{give: "/a%7f", wantErr: authz.ErrInvalidPath},
		{give: "/a%zz", wantErr: authz.ErrInvalidPath},
		{give: "/a%2", wantErr: authz.ErrInvalidPath},
		{give: "/a%", wantErr: authz.ErrInvalidPath},
		{give: "/a%%30%30", wantErr: authz.ErrInvalidPath},

		// Class: encoded slashes and backslashes (unless allowed).
		{give: "/admin%2fx", wantErr: authz.ErrInvalidPath},
		{give: "/public/..%2Fadmin", wantErr: authz.ErrInvalidPath},
		{give: "/public/..%5cadmin", wantErr: authz.ErrInvalidPath},
		{give: "/public/%252e%252e/admin", wantErr: authz.ErrAmbiguousPath},

		// Class: not origin-form (absolute-form, asterisk, relative).
		{give: "http://evil/admin", wantErr: authz.ErrInvalidPath},
		{give: "*", wantErr: authz.ErrInvalidPath},
		{give: "admin", wantErr: authz.ErrInvalidPath},
		{give: "", wantErr: authz.ErrInvalidPath},
		{give: "/a?b", wantErr: authz.ErrInvalidPath},

		// Class: a raw backslash ('/' to Envoy, IIS and WHATWG parsers,
		// a plain character to most servers).
		{give: "/public\\..\\admin", wantErr: authz.ErrAmbiguousPath},
		{give: "/admin\\", wantErr: authz.ErrAmbiguousPath},
		{give: "\\admin", wantErr: authz.ErrInvalidPath},

		// Class: '#': a fragment to some upstreams, data to others.
		{give: "/public#/../admin", wantErr: authz.ErrAmbiguousPath},
		{give: "/admin#", wantErr: authz.ErrAmbiguousPath},

		// Class: double encoding (decoded twice it is another path).
		{give: "/%2561dmin", wantErr: authz.ErrAmbiguousPath},
		{give: "/%25%36%31dmin", wantErr: authz.ErrAmbiguousPath},
		{give: "/%252F", wantErr: authz.ErrAmbiguousPath},
		{give: "/a/%2561/b", wantErr: authz.ErrAmbiguousPath},
		// A '/' ends an escape: "/%25/41" decoded twice is "/%/41".
		{give: "/%25/41", want: "/%25/41"},
		{give: "/100%25/2f", want: "/100%25/2f"},

		// Class: path parameters. Kept (most upstreams see them), but a
		// segment that a servlet container's stripping turns into a dot
		// or empty segment is refused.
		{give: "/shop;jsessionid=1/cart", want: "/shop;jsessionid=1/cart"},
		{give: "/admin;x/", want: "/admin;x/"},
		{give: "/public/..;/admin", wantErr: authz.ErrAmbiguousPath},
		{give: "/public/..;jsessionid=1/admin", wantErr: authz.ErrAmbiguousPath},
		{give: "/public/%2e%2e;/admin", wantErr: authz.ErrAmbiguousPath},
		{give: "/admin/.;x/", wantErr: authz.ErrAmbiguousPath},
		{give: "/public/;x/../admin", wantErr: authz.ErrAmbiguousPath},
		{give: "/admin%3bx", wantErr: authz.ErrAmbiguousPath},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := authz.CanonicalPath(tt.give, tt.allowEncoded)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("CanonicalPath(%q) = %q, %v; want %q, %v", tt.give, got, err, tt.want, tt.wantErr)
			}
			if err != nil {
				return
			}
			again, err := authz.CanonicalPath(got, tt.allowEncoded)
			if err != nil || again != got {
				t.Fatalf("not idempotent: CanonicalPath(%q) = %q, %v", got, again, err)
			}
		})
	}
}

// oraclePath is an independent canonicaliser built on net/url: decode each
// segment with url.PathUnescape, re-escape what must stay encoded, merge
// slashes, and remove dot segments with URL.ResolveReference (RFC 3986
// 5.2). It also reports the readings on which mainstream upstreams
// disagree, which the canonicaliser must refuse. ok is false when the
// path is malformed to net/url or decodes to control characters or
// invalid UTF-8.
func oraclePath(raw string) (canonical string, ambiguous, ok bool) {
	if !strings.HasPrefix(raw, "/") || strings.ContainsAny(raw, "?") {
		return "", false, false
	}
	if strings.ContainsAny(raw, "\\#") {
		ambiguous = true
	}
	var decoded []string
	for _, seg := range strings.Split(raw[1:], "/") {
		d, err := url.PathUnescape(seg)
		if err != nil {
			return "", false, false
		}
		for _, r := range d {
			if r < 0x20 || r == 0x7f {
				return "", false, false
			}
		}
		if !utf8.ValidString(d) {
			return "", false, false
		}
		if strings.ContainsAny(d, "/\\") {
			return "", false, false // an encoded slash: refused (allowEncoded is off)
		}
		lower := strings.ToLower(seg)
		if strings.Contains(lower, "%3b") {
			ambiguous = true
		}
		if base, _, params := strings.Cut(d, ";"); params && (base == "" || base == "." || base == "..") {
			ambiguous = true
		}
		for i := 0; i+2 < len(d); i++ {
			if d[i] == '%' && isHexDigit(d[i+1]) && isHexDigit(d[i+2]) {
				ambiguous = true // decodes again
			}
		}
		decoded = append(decoded, d)
	}
	resolve := func(segs []string) []string {
		// ResolveReference resolves the escaped form of Path, so a '%'
		// or '?' inside a segment stays data.
		ref := &url.URL{Path: "/" + strings.Join(segs, "/")}
		base, _ := url.Parse("http://h/")
		out := strings.Split(base.ResolveReference(ref).EscapedPath()[1:], "/")
		for i, s := range out {
			out[i], _ = url.PathUnescape(s)
		}
		return out
	}
	merge := func(segs []string) []string {
		var out []string
		for i, s := range segs {
			if s != "" || i == len(segs)-1 {
				out = append(out, s)
			}
		}
		return out
	}
	rfcFirst := merge(resolve(decoded))
	mergeFirst := merge(resolve(merge(decoded)))
	join := func(segs []string) string {
		r := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23")
		for i, s := range segs {
			segs[i] = r.Replace(s)
		}
		return "/" + strings.Join(segs, "/")
	}
	a, b := join(rfcFirst), join(mergeFirst)
	if a != b {
		ambiguous = true
	}
	return a, ambiguous, true
}

func isHexDigit(c byte) bool { return strings.IndexByte("0123456789abcdefABCDEF", c) >= 0 }

// FuzzCanonicalPath is the differential test: whatever the canonicaliser
// accepts, net/url resolves to the same path; whatever it refuses is
// malformed or ambiguous to the oracle too.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{
		"/", "/admin/x/..", "/%61dmin", "/a//b/../c", "/admin//..", "/public/..;/admin", "/a%2fb", "/%c0%af",
		"/caf%C3%A9", "/a%20b/./", "/a\\b", "/a#b", "/%2561", "/x/%2e%2E/y/.", "/;x", "//..", "/a/b/c/../../..", "/%3F%23%25",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := authz.CanonicalPath(raw, false)
		want, ambiguous, ok := oraclePath(raw)
		switch {
		case err == nil && (!ok || ambiguous):
			t.Fatalf("CanonicalPath(%q) = %q; the oracle finds it malformed (%v) or ambiguous (%v)", raw, got, !ok, ambiguous)
		case err == nil && got != want:
			t.Fatalf("CanonicalPath(%q) = %q; net/url resolves %q", raw, got, want)
		case err != nil && ok && !ambiguous:
			t.Fatalf("CanonicalPath(%q) refused (%v); net/url resolves it unambiguously to %q", raw, err, want)
		case err != nil && !errors.Is(err, authz.ErrInvalidPath) && !errors.Is(err, authz.ErrAmbiguousPath):
			t.Fatalf("CanonicalPath(%q): unexpected error %v", raw, err)
		}
		if err == nil {
			if again, err := authz.CanonicalPath(got, false); err != nil || again != got {
				t.Fatalf("not idempotent: %q -> %q -> %q, %v", raw, got, again, err)
			}
		}
	})
}
