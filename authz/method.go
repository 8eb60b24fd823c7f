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

// methodOverrides returns the request's method override headers (names as
// the request spells them, sorted) and their values, and its target
// override headers (names, sorted); nil when there are none, without
// allocating.
func methodOverrides(headers map[string]string) (names, values, targets []string) {
	for k := range headers {
		key := k
		if !isHeaderKey(k) {
			key = headerKey(k)
		}
		switch {
		case methodOverrideKeys[key]:
			names = append(names, k)
		case targetOverrideKeys[key]:
			targets = append(targets, k)
		}
	}
	slices.Sort(names)
	slices.Sort(targets)
	for _, n := range names {
		values = append(values, headers[n])
	}
	return names, values, targets
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
