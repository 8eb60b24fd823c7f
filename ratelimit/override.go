package ratelimit

// overrideFor is the descriptor's limit override when it applies: only in
// a domain the matcher defines. envoyproxy/ratelimit looks the domain up
// before it reads the override (config_impl.go GetLimit) and answers OK
// with no limit for a domain it does not know, so a caller of
// ShouldRateLimit cannot make the service count under any domain it names.
// A Matcher that cannot say which domains it defines (no HasDomain method)
// is taken to define every domain; no Matcher defines none.
func overrideFor(m Matcher, domain string, d *Descriptor) *Limit {
	if d.Override == nil || m == nil {
		return nil
	}
	if hd, ok := m.(interface{ HasDomain(string) bool }); ok && !hd.HasDomain(domain) {
		return nil
	}
	return d.Override
}
