package authz

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// legacyCanonicalPath is canonicalPath as it was before CanonicalPath
// (kept here only as the benchmark's baseline): it decoded only %2E and
// removed dot segments without RFC 3986's trailing slash.
func legacyCanonicalPath(p string, allowEncoded bool) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	clean, ascii := true, true
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x20 || c == 0x7f {
			return "", false
		}
		if c >= 0x80 {
			ascii = false
		}
		if c == '%' {
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", false
			}
			switch strings.ToLower(p[i+1 : i+3]) {
			case "2f", "5c":
				if !allowEncoded {
					return "", false
				}
			case "2e":
				clean = false
			}
		}
		if c == '/' && i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
			clean = false
		}
	}
	if !ascii && !utf8.ValidString(p) {
		return "", false
	}
	if clean {
		return p, true
	}
	// Decode %2E (an unreserved character: RFC 3986 6.2.2.2) so "%2e%2e"
	// is resolved like "..".
	p = strings.NewReplacer("%2e", ".", "%2E", ".").Replace(p)
	trailing := strings.HasSuffix(p, "/")
	var out []string
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	res := "/" + strings.Join(out, "/")
	if trailing && res != "/" {
		res += "/"
	}
	return res, true
}

// BenchmarkCanonicalPath compares the canonicaliser with the one it
// replaced, on paths as the gateway forwards them: clean ones (the common
// case, no allocation either way) and ones that need work.
func BenchmarkCanonicalPath(b *testing.B) {
	paths := map[string]string{
		"clean":   "/api/v1/customers/8f14e45f-ceea-467f-a9c1-26f3a6b0e3a1/orders",
		"encoded": "/api/v1/customers/8f14e45f%2Dceea/orders/%7Euser/caf%C3%A9/./x/../y",
		"dots":    "/static/app/../img/./logo.png",
	}
	for name, p := range paths {
		want, err := CanonicalPath(p, false)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("impl=legacy/path="+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := legacyCanonicalPath(p, false); !ok {
					b.Fatal("refused")
				}
			}
		})
		b.Run("impl=new/path="+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got, _ := CanonicalPath(p, false); got != want {
					b.Fatal(got)
				}
			}
		})
	}
}
