package authz

import (
	"net/url"
	"slices"
	"strings"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// Modes of Config.StripCredentials: which credentials a request carries
// that no authenticator verified are removed before it goes upstream.
const (
	// StripCredentialsRule (the default): on an authenticate rule, every
	// credential at a source of the rule's authenticators other than the
	// one that accepted the request. A forged Authorization header next to
	// a valid API key does not reach the upstream. The accepting
	// authenticator's own credential follows its strip_credential, and a
	// source it shares (the same header, the Authorization header, the
	// same cookie) is its credential, not another.
	StripCredentialsRule = "rule"
	// StripCredentialsVerified strips only the accepting authenticator's
	// credential, when its strip_credential says so (the behaviour before
	// strip_credentials existed).
	StripCredentialsVerified = "verified"
	// StripCredentialsAll is rule, and on allow (anonymous) rules also
	// every credential at a source of any configured authenticator: an
	// anonymous request then never carries an unverified credential
	// upstream, at the price of the upstream never seeing one either (a
	// public page cannot read the session cookie it shares with us).
	StripCredentialsAll = "all"
)

// validateStripCredentials checks Config.StripCredentials.
func validateStripCredentials(mode string) error {
	switch mode {
	case "", StripCredentialsRule, StripCredentialsVerified, StripCredentialsAll:
		return nil
	}
	return yamlfile.Errorf("strip_credentials", "%q is not one of rule, verified, all", mode)
}

// stripPlan is the compiled StripCredentials.
type stripPlan struct {
	mode string
	// everyone are the authenticators in name order: the sources mode
	// all strips on allow rules.
	everyone []*Authenticator
	// keys are the headerKey of every header source, computed once:
	// a configured name in upper case would otherwise cost an
	// allocation per request.
	keys map[string]string
}

func compileStrip(mode string, byName map[string]*Authenticator) stripPlan {
	if mode == "" {
		mode = StripCredentialsRule
	}
	s := stripPlan{mode: mode, keys: map[string]string{}}
	for _, a := range byName {
		if h := a.Source.Header; h != "" {
			s.keys[h] = headerKey(h)
		}
	}
	if mode == StripCredentialsAll {
		for _, a := range byName {
			s.everyone = append(s.everyone, a)
		}
		slices.SortFunc(s.everyone, func(a, b *Authenticator) int { return strings.Compare(a.Name, b.Name) })
	}
	return s
}

// unverified removes, from an allowed decision d, the credentials r
// carries at sources of authns other than winner's. Nothing is allocated
// when r carries none.
func (s *stripPlan) unverified(r *Request, scan *headerScan, authns []*Authenticator, winner *Authenticator, d *Decision) {
	var names, cookies []string
	for _, a := range authns {
		if a != winner {
			names, cookies = s.carried(r, scan, &a.Source, winner, names, cookies)
		}
	}
	applyStrip(r, winner, names, cookies, d)
}

// anonymous is unverified for an allow rule under mode all: every
// configured source, no winner.
func (s *stripPlan) anonymous(r *Request, scan *headerScan, d *Decision) {
	var names, cookies []string
	for _, a := range s.everyone {
		names, cookies = s.carried(r, scan, &a.Source, nil, names, cookies)
	}
	applyStrip(r, nil, names, cookies, d)
}

// carried appends to names the header names (every spelling) and to
// cookies the cookie names of src that r carries, unless winner's source
// is the same place.
func (s *stripPlan) carried(r *Request, scan *headerScan, src *CredentialSource, winner *Authenticator, names, cookies []string) ([]string, []string) {
	var w *CredentialSource
	if winner != nil {
		w = &winner.Source
	}
	switch {
	case src.Header != "":
		key := s.keys[src.Header]
		if w != nil && s.occupies(w, key) {
			return names, cookies
		}
		if _, ok := r.Headers[key]; ok && !slices.Contains(names, key) {
			names = append(names, key)
		}
		for _, v := range scan.spellingsOf(key) {
			if !slices.Contains(names, v) {
				names = append(names, v)
			}
		}
	case src.Authorization != "":
		// Whatever its scheme: an upstream that reads this source reads
		// the header, and another scheme is no more verified.
		if w != nil && s.occupies(w, "authorization") {
			return names, cookies
		}
		if _, ok := r.Headers["authorization"]; ok && !slices.Contains(names, "authorization") {
			names = append(names, "authorization")
		}
	case src.Cookie != "":
		if w != nil && (w.Cookie == src.Cookie || w.Header != "" && s.keys[w.Header] == "cookie") {
			return names, cookies
		}
		if carriesCookie(r.Headers["cookie"], src.Cookie) && !slices.Contains(cookies, src.Cookie) {
			cookies = append(cookies, src.Cookie)
		}
	}
	return names, cookies
}

// occupies reports whether the winner's credential is in the header
// (lower-case key): its own header, the Authorization header for a
// scheme, or the cookie header for a cookie. A loser's source there holds
// the winner's credential, which its strip_credential governs.
func (s *stripPlan) occupies(w *CredentialSource, key string) bool {
	switch {
	case w.Header != "":
		return s.keys[w.Header] == key
	case w.Authorization != "":
		return key == "authorization"
	case w.Cookie != "":
		return key == "cookie"
	}
	return false // a peer (mTLS) credential is in no header
}

// applyStrip adds the removals to d. Cookies are removed by setting the
// cookie header without them (and without the winner's, when it strips
// its own), or by removing the header when nothing is left.
func applyStrip(r *Request, winner *Authenticator, names, cookies []string, d *Decision) {
	if len(names) > 0 {
		d.RemoveHeaders = slices.Concat(d.RemoveHeaders, names)
	}
	if len(cookies) == 0 || slices.Contains(d.RemoveHeaders, "cookie") {
		return // none, or the whole cookie header goes already
	}
	if winner != nil && winner.StripCredential && winner.Source.Cookie != "" {
		cookies = append(cookies, winner.Source.Cookie)
	}
	rest := r.Headers["cookie"]
	for _, c := range cookies {
		rest = withoutCookieSpellings(rest, c)
	}
	set := slices.DeleteFunc(slices.Clone(d.UpstreamHeaders), func(h Header) bool { return h.Name == "cookie" })
	if rest == "" {
		d.UpstreamHeaders = set
		d.RemoveHeaders = slices.Concat(d.RemoveHeaders, []string{"cookie"})
		return
	}
	d.UpstreamHeaders = append(set, Header{Name: "cookie", Value: rest})
}

// cookieNameKey is how upstreams may read a cookie's name: trimmed,
// percent-decoded (Rack, PHP) and in lower case (ASP.NET Core's cookie
// collection ignores case). Two names with the same key may be one
// cookie to some upstream.
func cookieNameKey(name string) string {
	name = strings.TrimSpace(name)
	if strings.IndexByte(name, '%') >= 0 {
		if d, err := url.PathUnescape(name); err == nil {
			name = strings.TrimSpace(d)
		}
	}
	return ASCIILower(name)
}

// cookiePairs calls f with the name of each pair of a cookie header,
// split on ';' and on ',' (Rack splits on both), until f returns false.
func cookiePairs(header string, f func(name string) bool) {
	for part := range strings.FieldsFuncSeq(header, func(r rune) bool { return r == ';' || r == ',' }) {
		k, _, _ := strings.Cut(part, "=")
		if !f(k) {
			return
		}
	}
}

// carriesCookie reports whether the cookie header holds a pair that some
// upstream reads as cookie name (see cookieNameKey).
func carriesCookie(header, name string) bool {
	if header == "" {
		return false
	}
	key, found := cookieNameKey(name), false
	cookiePairs(header, func(k string) bool {
		found = cookieNameKey(k) == key
		return !found
	})
	return found
}

// withoutCookieSpellings is header without the pairs some upstream reads
// as cookie name; a ';'-separated part keeps its other ','-separated
// pieces (a value with commas is untouched unless a piece names it).
func withoutCookieSpellings(header, name string) string {
	key := cookieNameKey(name)
	var kept []string
	for _, part := range strings.Split(header, ";") {
		var pieces []string
		for _, piece := range strings.Split(part, ",") {
			k, _, _ := strings.Cut(piece, "=")
			if cookieNameKey(k) != key {
				pieces = append(pieces, piece)
			}
		}
		if p := strings.TrimSpace(strings.Join(pieces, ",")); p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "; ")
}
