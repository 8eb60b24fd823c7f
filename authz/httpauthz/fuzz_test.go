package httpauthz_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/authz/httpauthz"
)

// FuzzRequestFromHTTP feeds raw HTTP/1.1 requests, as a client of the
// gateway could shape them, through Go's request parser and the
// conversion: never a panic, and whatever is accepted is a well-formed
// authz.Request (a path behind the prefix that starts with "/" and holds no
// query, lower-case header names, the pseudo-headers filled).
func FuzzRequestFromHTTP(f *testing.F) {
	for _, s := range []string{
		"GET /check/api/x?a=1 HTTP/1.1\r\nHost: a.example.com\r\nX-Api-Key: k\r\n\r\n",
		"POST /check/%2e%2e/admin HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.1\r\n\r\n",
		"GET /checkers HTTP/1.1\r\nHost: h\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET http://evil/check/x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /check/x#frag?y HTTP/1.1\r\nHost: h\r\nx-auth_subject: root\r\nX-AUTH-SUBJECT: r2\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		r, ok := httpauthz.RequestFromHTTP(req, "/check")
		if !ok {
			return
		}
		if !strings.HasPrefix(r.Path, "/") || strings.Contains(r.Path, "?") {
			t.Fatalf("path %q", r.Path)
		}
		if r.Headers[":method"] != r.Method || r.Headers[":authority"] != r.Host {
			t.Fatalf("pseudo-headers %v do not match %q %q", r.Headers, r.Method, r.Host)
		}
		for k := range r.Headers {
			if strings.IndexFunc(k, func(c rune) bool { return c >= 'A' && c <= 'Z' }) >= 0 {
				t.Fatalf("header name %q is not lower-case", k)
			}
		}
	})
}
