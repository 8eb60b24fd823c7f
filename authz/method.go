package authz

import (
	"slices"
	"strings"
)

// Method override modes (Config.MethodOverride).
const (
	// MethodOverrideStrip removes every method override header from the
	// request sent upstream, so the upstream acts on the method the rules
	// judged. The default.
	MethodOverrideStrip = "strip"
	// MethodOverrideReject refuses a request that carries one (400
	// method_override).
	MethodOverrideReject = "reject"
	// MethodOverrideMatch forwards them, and matches rules on the request's
	// method and on each override: when they would pick different rules the
	// request is refused (400 ambiguous_method).
	MethodOverrideMatch = "match"
)

// methodOverrideKeys are the headerKeys of the headers frameworks read as
// "the real method": X-HTTP-Method-Override (Express method-override,
// Symfony, Laravel, Spring's HiddenHttpMethodFilter variants, Google APIs),
// X-HTTP-Method (OData, Microsoft), X-Method-Override (several REST
// toolkits). Any spelling whose headerKey is one of these counts.
var methodOverrideKeys = map[string]bool{
	"x-http-method-override": true,
	"x-http-method":          true,
	"x-method-override":      true,
}

// targetOverrideKeys are the headerKeys of the headers some frameworks read
// as "the real request target", in place of the path rules matched:
// X-Original-URL and X-Rewrite-URL (Symfony before 3.4.14/4.1.3,
// CVE-2018-14773; Zend Framework 1 and 2 and Laminas before ZF2018-01;
// applications behind IIS URL Rewrite). "GET /public" with
// "X-Original-URL: /admin/users" is judged as /public and served as
// /admin/users. A client never has a reason to send them; they are removed
// in the strip and match modes and refused in the reject mode.
var targetOverrideKeys = map[string]bool{
	"x-original-url": true,
	"x-rewrite-url":  true,
}

// headerScan is what Decide needs from the request's header names, read in
// one pass over the headers map: the names that are not their own headerKey
// (variant spellings such as "X_Auth_Subject", with their keys), and the
// method and target override headers. Every field is nil in the common
// case (lower-case names, no overrides), and the scan then allocates
// nothing.
type headerScan struct {
	// variants are the names that are not their own headerKey, sorted;
	// variantKeys[i] is headerKey(variants[i]).
	variants, variantKeys []string
	// names and values are the method override headers (names as the
	// request spells them, sorted) and their values; targets the target
	// override headers (sorted).
	names, values, targets []string
}

// PlainHeaderName reports whether a header name tells Decide nothing by
// itself: it is its own headerKey (no upper case, no '_', so no variant
// spelling of another name) and cannot be a method or target override
// header. See Request.PlainHeaderNames.
func PlainHeaderName(name string) bool {
	return isHeaderKey(name) && (!overrideCandidate(name) || !methodOverrideKeys[name] && !targetOverrideKeys[name])
}

// requestScan is scanHeaders of the request's headers, without reading
// them when the request's decoder found every name plain.
func requestScan(r *Request) headerScan {
	if r.PlainHeaderNames {
		return headerScan{}
	}
	return scanHeaders(r.Headers)
}

// scanHeaders reads headers once for everything Decide asks of their names.
func scanHeaders(headers map[string]string) headerScan {
	var s headerScan
	for k := range headers {
		key := k
		if !isHeaderKey(k) {
			key = headerKey(k)
			s.variants = append(s.variants, k)
		} else if !overrideCandidate(k) {
			continue // the common case: no map lookup
		}
		switch {
		case methodOverrideKeys[key]:
			s.names = append(s.names, k)
		case targetOverrideKeys[key]:
			s.targets = append(s.targets, k)
		}
	}
	if len(s.variants) > 0 {
		slices.Sort(s.variants)
		s.variantKeys = make([]string, len(s.variants))
		for i, k := range s.variants {
			s.variantKeys[i] = headerKey(k)
		}
	}
	slices.Sort(s.names)
	slices.Sort(s.targets)
	for _, n := range s.names {
		s.values = append(s.values, headers[n])
	}
	return s
}

// overrideCandidate reports whether a name in headerKey form may be one of
// methodOverrideKeys or targetOverrideKeys: all start with "x-" and are
// 13 to 22 bytes long (TestOverrideCandidate holds the bounds to the maps).
func overrideCandidate(key string) bool {
	return len(key) >= 13 && len(key) <= 22 && key[0] == 'x' && key[1] == '-'
}

// spellings returns the request's header names that are variant spellings
// of a name in keys (not the exact lower-case name: callers list those
// already), sorted. Envoy's headers_to_remove takes exact names, so the
// variants are found in the request itself. Nil when there are none: the
// common case, without allocating.
func (s *headerScan) spellings(keys map[string]bool) []string {
	var out []string
	for i, k := range s.variantKeys {
		if keys[k] {
			out = append(out, s.variants[i])
		}
	}
	return out
}

// otherSpelling is the package's otherSpelling from the scan: whether the
// headers hold, besides key itself, another spelling of it.
func (s *headerScan) otherSpelling(key string) bool {
	for i, k := range s.variantKeys {
		if k == key && s.variants[i] != key {
			return true
		}
	}
	return false
}

// spellingsOf is spellings for a single key.
func (s *headerScan) spellingsOf(key string) []string {
	var out []string
	for i, k := range s.variantKeys {
		if k == key {
			out = append(out, s.variants[i])
		}
	}
	return out
}

// overrideMethods parses override values: comma-joined repeats are split;
// each must be an HTTP method token. ok is false when one is not.
func overrideMethods(values []string) (methods []string, ok bool) {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			m := asciiUpper(strings.TrimSpace(part))
			if !validHeaderName(m) {
				return nil, false
			}
			methods = append(methods, m)
		}
	}
	return methods, true
}

// asciiUpper upper-cases ASCII letters only: strings.ToUpper would turn
// "ı" (dotless i) into "I" and so match a method the upstream never sees.
func asciiUpper(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'a' <= c && c <= 'z' {
			b := []byte(s)
			for j, c := range b {
				if 'a' <= c && c <= 'z' {
					b[j] = c - ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return s
}

// queryMethodOverrides returns the values of the request's "_method" query
// parameters, decoded, in the order given; nil when there are none,
// without allocating. Laravel and Symfony (with HTTP method parameter
// override, which Laravel turns on), and Express's method-override with a
// query getter, act on "POST /x?_method=DELETE" as a DELETE. A query
// parameter cannot be removed with the request's headers, so the pipeline
// matches rules on these values in the strip mode too.
//
// The key is read as loosely as any of those upstreams reads it: pairs are
// split at '&' and ';' (Python before 3.9.2, Tomcat and others split at
// both), percent escapes and '+' are decoded, and, as PHP does when it
// builds $_GET, ' ', '.' and '[' read as '_', and "_method[...]" is
// "_method" too.
func queryMethodOverrides(query string) []string {
	if !strings.Contains(query, "method") && strings.IndexByte(query, '%') < 0 {
		return nil
	}
	var values []string
	for query != "" {
		var pair string
		if i := strings.IndexAny(query, "&;"); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, ""
		}
		k, v, _ := strings.Cut(pair, "=")
		if strings.IndexByte(k, '%') < 0 && !strings.Contains(k, "method") {
			continue // the common case, without decoding
		}
		if isMethodParam(queryUnescape(k)) {
			values = append(values, queryUnescape(v))
		}
	}
	return values
}

// isMethodParam reports whether a decoded query key names "_method" to PHP
// (leading spaces skipped, ' ', '.' and an unmatched '[' read as '_';
// "_method[x]" is the array "_method") or to qs and other parsers (exact,
// or "_method[...]"). It errs on the side of matching.
func isMethodParam(k string) bool {
	k = strings.TrimLeft(k, " ") // PHP skips leading spaces
	if i := strings.IndexByte(k, ']'); i >= 0 && strings.IndexByte(k, '[') >= 0 && strings.IndexByte(k, '[') < i {
		k = k[:strings.IndexByte(k, '[')]
	}
	if len(k) != len("_method") {
		return false
	}
	switch k[0] {
	case '_', ' ', '.', '[':
	default:
		return false
	}
	return k[1:] == "method"
}

// queryUnescape decodes '+' and valid percent escapes as form decoding does;
// an invalid escape stays as it is (PHP keeps it, others refuse the query).
func queryUnescape(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}
