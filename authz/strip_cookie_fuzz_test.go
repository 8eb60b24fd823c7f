package authz

import "testing"

// FuzzWithoutCookieSpellings: whatever the cookie header, what is left
// carries no spelling of the removed name, and removing from a header
// that carries none changes nothing but spacing around ';'.
func FuzzWithoutCookieSpellings(f *testing.F) {
	for _, s := range []string{"session=a; theme=b", "SESSION=a, x=1", "sess%69on=a;;", "a=1,b; %zz=2", " ; , =; session"} {
		f.Add(s, "session")
	}
	f.Fuzz(func(t *testing.T, header, name string) {
		rest := withoutCookieSpellings(header, name)
		if carriesCookie(rest, name) && cookieNameKey(name) != "" {
			t.Fatalf("withoutCookieSpellings(%q, %q) = %q still carries it", header, name, rest)
		}
		if !carriesCookie(header, name) && withoutCookieSpellings(rest, name) != rest {
			t.Fatalf("not idempotent on %q", rest)
		}
	})
}
