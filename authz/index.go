package authz

import (
	"slices"
	"strings"
)

// ruleIndex finds the first rule, in config order, that matches a request,
// without trying every rule. It gives exactly the answer of the linear scan
// (firstLinear; index_test.go proves it differentially):
//
//   - Host: a rule is filed under each of its exact hosts, each of its
//     "*.domain" suffixes, or under "any host". A request host is looked up
//     as itself, as each of its label suffixes (".b.c" and ".c" of "a.b.c",
//     which are exactly the suffixes matchHost accepts: a wildcard suffix
//     begins with a dot and must be shorter than the host), and any-host.
//   - Path, within each host bucket: exact paths in a map, prefixes in a map
//     probed at each prefix length the bucket uses, and the rules with a
//     regex or no path condition in one list kept in config order.
//   - Methods are checked last, on the candidates.
//
// Every list holds rule positions in ascending order, so the first rule
// that passes in a list is that list's answer, and the smallest position
// over all lists is the first rule of the whole policy. A scan stops as soon
// as its next position is not before the best found so far.
type ruleIndex struct {
	exact  map[string]*pathIndex // canonical host
	suffix map[string]*pathIndex // ".example.com"
	any    *pathIndex            // rules matching every host; nil if none
	// suffixLens has bit n set when suffix has a key of length n: a host
	// suffix of another length is not looked up.
	suffixLens []uint64
}

type pathIndex struct {
	exact      map[string][]int32
	prefix     map[string][]int32
	prefixLens []int   // the distinct lengths of prefix's keys, ascending
	other      []int32 // regex or no path condition: matchPath decides
}

// newRuleIndex files rules by host and path. Rules are compiled and
// validated (at most one path condition each).
func newRuleIndex(rules []rule) *ruleIndex {
	x := &ruleIndex{exact: map[string]*pathIndex{}, suffix: map[string]*pathIndex{}}
	bucket := func(m map[string]*pathIndex, key string) *pathIndex {
		b := m[key]
		if b == nil {
			b = &pathIndex{}
			m[key] = b
		}
		return b
	}
	for i := range rules {
		m := rules[i].match
		pos := int32(i) // config files hold far fewer than 2^31 rules
		if m.anyHost {
			if x.any == nil {
				x.any = &pathIndex{}
			}
			x.any.add(m, pos)
			continue // every other host entry of the rule is subsumed
		}
		// A rule listing the same host twice is filed once per bucket:
		// add skips a position equal to the list's last.
		for _, h := range m.exact {
			bucket(x.exact, h).add(m, pos)
		}
		for _, s := range m.suffixes {
			bucket(x.suffix, s).add(m, pos)
		}
	}
	for _, b := range x.exact {
		b.finish()
	}
	for s, b := range x.suffix {
		b.finish()
		for len(x.suffixLens) <= len(s)/64 {
			x.suffixLens = append(x.suffixLens, 0)
		}
		x.suffixLens[len(s)/64] |= 1 << (len(s) % 64)
	}
	if x.any != nil {
		x.any.finish()
	}
	return x
}

// add files rule pos by its path condition, in the same precedence as
// matchPath.
func (b *pathIndex) add(m *matcher, pos int32) {
	switch {
	case m.pathExact != "":
		if b.exact == nil {
			b.exact = map[string][]int32{}
		}
		b.exact[m.pathExact] = appendPos(b.exact[m.pathExact], pos)
	case m.pathPrefix != "":
		if b.prefix == nil {
			b.prefix = map[string][]int32{}
		}
		b.prefix[m.pathPrefix] = appendPos(b.prefix[m.pathPrefix], pos)
	default:
		b.other = appendPos(b.other, pos)
	}
}

func appendPos(list []int32, pos int32) []int32 {
	if n := len(list); n > 0 && list[n-1] == pos {
		return list
	}
	return append(list, pos)
}

// finish records the prefix lengths and trims the lists' spare capacity.
func (b *pathIndex) finish() {
	for p, l := range b.prefix {
		b.prefixLens = append(b.prefixLens, len(p))
		b.prefix[p] = slices.Clip(l)
	}
	slices.Sort(b.prefixLens)
	b.prefixLens = slices.Compact(b.prefixLens)
	for p, l := range b.exact {
		b.exact[p] = slices.Clip(l)
	}
	b.other = slices.Clip(b.other)
}

// first returns the first rule in rules (the ones the index was built
// from) that matches, or nil.
func (x *ruleIndex) first(rules []rule, host, path, method string) *rule {
	best := len(rules)
	if b := x.exact[host]; b != nil {
		best = b.first(rules, path, method, best)
	}
	if len(x.suffix) > 0 {
		// Each dot after the first byte starts a suffix matchHost accepts.
		for j := 1; j < len(host); j++ {
			k := strings.IndexByte(host[j:], '.')
			if k < 0 {
				break
			}
			j += k
			if n := len(host) - j; n/64 >= len(x.suffixLens) || x.suffixLens[n/64]&(1<<(n%64)) == 0 {
				continue
			}
			if b := x.suffix[host[j:]]; b != nil {
				best = b.first(rules, path, method, best)
			}
		}
	}
	if x.any != nil {
		best = x.any.first(rules, path, method, best)
	}
	if best == len(rules) {
		return nil
	}
	return &rules[best]
}

// first returns the position of the bucket's first rule before best that
// matches path and method, else best.
func (b *pathIndex) first(rules []rule, path, method string, best int) int {
	if b.exact != nil {
		best = scan(rules, b.exact[path], method, best)
	}
	for _, n := range b.prefixLens {
		if n > len(path) {
			break
		}
		if l, ok := b.prefix[path[:n]]; ok {
			best = scan(rules, l, method, best)
		}
	}
	return scanOther(rules, b.other, path, method, best)
}

// scan returns the first position in list before best whose rule accepts
// method (its path is known to match), else best.
func scan(rules []rule, list []int32, method string, best int) int {
	for _, i := range list {
		if int(i) >= best {
			break
		}
		if rules[i].match.matchMethod(method) {
			return int(i)
		}
	}
	return best
}

// scanOther is scan for rules whose path condition still has to be tried.
func scanOther(rules []rule, list []int32, path, method string, best int) int {
	for _, i := range list {
		if int(i) >= best {
			break
		}
		if m := rules[i].match; m.matchMethod(method) && m.matchPath(path) {
			return int(i)
		}
	}
	return best
}
