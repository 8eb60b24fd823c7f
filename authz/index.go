package authz

import (
	"hash/maphash"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"
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
//     Each distinct host, suffix and any-host is a bucket.
//   - Path, within each bucket: exact paths and prefixes in hash tables
//     keyed by (bucket, path), probed at each prefix length the bucket
//     uses, and the rules with a regex or no path condition in one list
//     kept in config order.
//   - Methods are checked last, on the candidates.
//
// Every list holds rule positions in ascending order, so the first rule
// that passes in a list is that list's answer, and the smallest position
// over all lists is the first rule of the whole policy. A scan stops as soon
// as its next position is not before the best found so far.
//
// Layout: a large policy lives for the life of the process, and the garbage
// collector marks all of it in every cycle. So the index is a handful of
// flat tables without pointers (the collector marks each as one object and
// never scans it): the strings are spans of one text, lists are spans of
// one []int32, hash tables are slices of int32 slots, methods are bits.
// The only pointers are the compiled regexes, which are shared: a regex
// rule keeps its literal prefix as text and only the rest as a regex, and
// rules with the same rest share one (routes like "/users/[0-9]+" and
// "/orders/[0-9]+" compile "[0-9]+" once).
type ruleIndex struct {
	text string // every string of the index (and the pipeline's rule names)
	seed maphash.Seed

	hosts    strTable // exact canonical host → bucket (val.off)
	suffixes strTable // ".example.com" → bucket (val.off)
	// suffixLens has bit n set when suffixes has a key of length n: a host
	// suffix of another length is not looked up.
	suffixLens []uint64
	any        int32 // the bucket of rules matching every host; -1 if none

	buckets  []bucket
	paths    strTable   // (bucket, exact path) → list in pos, for large buckets
	prefixes strTable   // (bucket, path prefix) → list in pos, for large buckets
	small    []strEntry // the small buckets' exact paths and prefixes
	lens     []uint32   // each bucket's prefix lengths, ascending (bucket.lens)
	pos      []int32    // every list of rule positions

	conds   []cond // one per rule, in config order
	methods []span // methods without a bit (cond.custom)
	res     []*regexp.Regexp
}

// span is text[off:off+n] of the index's text, or pos[off:off+n] or
// lens[off:off+n] for lists.
type span struct{ off, n uint32 }

// bucket is the rules of one host (or suffix, or any host) by path. A
// bucket with few exact paths (prefixes) keeps them in a short list in
// small, tried in turn as Go's maps do up to 8 keys: cheaper than hashing
// the path. Larger ones are in the paths (prefixes) table.
type bucket struct {
	exact  span // in small; n == 0 and exactHashed: in paths
	prefix span // in small; n == 0 and prefixHashed: in prefixes
	lens   span // in lens, for prefixes hashed
	other  span // in pos: regex or no path condition, matchPath decides

	exactHashed, prefixHashed bool
}

// smallBucket is how many exact paths or prefixes a bucket keeps in a list.
const smallBucket = 8

// cond is what the index still checks of a candidate rule: its methods,
// and for rules in a bucket's other list, the path.
type cond struct {
	path      span  // pathRegex: the literal prefix
	custom    span  // in methods
	re        int32 // pathRegex: index in res of the rest; -1: the literal is all
	methods   uint16
	kind      uint8
	anyMethod bool
	// checked: the rule has a requestMatch, which the caller's accept
	// decides for a candidate that passes the rest.
	checked bool
}

// Path condition kinds.
const (
	pathNone uint8 = iota
	pathExact
	pathPrefix
	pathRegex
)

// methodBit numbers the methods almost every rule names; others are kept
// as text.
func methodBit(m string) uint16 {
	switch m {
	case "GET":
		return 1 << 0
	case "HEAD":
		return 1 << 1
	case "POST":
		return 1 << 2
	case "PUT":
		return 1 << 3
	case "DELETE":
		return 1 << 4
	case "PATCH":
		return 1 << 5
	case "OPTIONS":
		return 1 << 6
	case "CONNECT":
		return 1 << 7
	case "TRACE":
		return 1 << 8
	}
	return 0
}

// strTable is an open-addressing hash table from (bucket, string) to a
// span, without pointers: slots hold entry numbers plus one (0 is empty).
// A table of a few entries has no slots and is searched in turn.
type strTable struct {
	slots []int32
	ents  []strEntry
}

type strEntry struct {
	bucket int32
	key    span
	val    span
}

// golden spreads bucket numbers over the hash (Fibonacci hashing).
const golden = 0x9E3779B97F4A7C15

func (x *ruleIndex) hash(b int32, s string) uint64 {
	return maphash.String(x.seed, s) ^ uint64(b)*golden
}

func (x *ruleIndex) str(s span) string { return x.text[s.off : s.off+s.n] }

// get returns the value of (b, s).
func (t *strTable) get(x *ruleIndex, b int32, s string) (span, bool) {
	if t.slots == nil { // a few entries: compared in turn, without hashing
		for i := range t.ents {
			if e := &t.ents[i]; e.bucket == b && int(e.key.n) == len(s) && x.str(e.key) == s {
				return e.val, true
			}
		}
		return span{}, false
	}
	mask := uint64(len(t.slots) - 1)
	for i := x.hash(b, s) & mask; ; i = (i + 1) & mask {
		e := t.slots[i]
		if e == 0 {
			return span{}, false
		}
		if ent := &t.ents[e-1]; ent.bucket == b && x.str(ent.key) == s {
			return ent.val, true
		}
	}
}

// newStrTable builds a table of ents (distinct keys) at most half full,
// or, for up to small entries, a list.
func newStrTable(x *ruleIndex, ents []strEntry, small int) strTable {
	if len(ents) <= small {
		return strTable{ents: exact(ents)}
	}
	n := 2
	for n < 2*len(ents) {
		n *= 2
	}
	t := strTable{slots: make([]int32, n), ents: exact(ents)}
	mask := uint64(n - 1)
	for k := range ents {
		i := x.hash(ents[k].bucket, x.str(ents[k].key)) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = int32(k + 1)
	}
	return t
}

// exact returns s in an array of its length (nil when empty), so that a
// long-lived table keeps no spare capacity.
func exact[T any](s []T) []T {
	if len(s) == cap(s) {
		return s
	}
	return append([]T(nil), s...)
}

// textBuilder collects the index's strings into one, each distinct string
// once.
type textBuilder struct {
	b    []byte
	seen map[string]span
}

// grow makes room for about n more bytes in about k strings.
func (t *textBuilder) grow(n, k int) {
	t.b = slices.Grow(t.b, n)
	if t.seen == nil {
		t.seen = make(map[string]span, k)
	}
}

// addNew adds s without looking for it: for strings known to be distinct
// (rule names).
func (t *textBuilder) addNew(s string) span {
	sp := span{off: uint32(len(t.b)), n: uint32(len(s))}
	t.b = append(t.b, s...)
	return sp
}

func (t *textBuilder) add(s string) span {
	if sp, ok := t.seen[s]; ok {
		return sp
	}
	if t.seen == nil {
		t.seen = map[string]span{}
	}
	sp := span{off: uint32(len(t.b)), n: uint32(len(s))}
	t.b = append(t.b, s...)
	t.seen[s] = sp
	return sp
}

// key is a (bucket, string) while building.
type key struct {
	bucket int32
	s      string
}

// indexBuilder gathers lists in maps before they are laid out flat.
type indexBuilder struct {
	x        *ruleIndex
	text     *textBuilder
	small    int // smallBucket
	hosts    map[string]int32
	suffixes map[string]int32
	paths    map[key][]int32
	prefixes map[key][]int32
	other    [][]int32 // per bucket
	lens     [][]uint32
	nexact   []int            // per bucket: distinct exact paths
	res      map[string]int32 // regex source (anchored by compile) → res
}

// newRuleIndex files the rules, compiled and validated (at most one path
// condition each), whose matchers ms are in config order. Its strings are
// added to text, which may hold the caller's strings already; the index's
// text is all of it.
func newRuleIndex(ms []*matcher, text *textBuilder) *ruleIndex {
	return newRuleIndexSmall(ms, text, smallBucket)
}

// newRuleIndexSmall is newRuleIndex keeping up to small exact paths and
// prefixes of a bucket in lists (the tests try both forms).
func newRuleIndexSmall(ms []*matcher, text *textBuilder, small int) *ruleIndex {
	x := &ruleIndex{seed: maphash.MakeSeed(), any: -1, conds: make([]cond, len(ms))}
	ib := &indexBuilder{x: x, text: text, small: small, hosts: map[string]int32{}, suffixes: map[string]int32{},
		paths: make(map[key][]int32, len(ms)/2), prefixes: make(map[key][]int32, len(ms)/2), res: map[string]int32{}}
	for i, m := range ms {
		pos := int32(i) // config files hold far fewer than 2^31 rules
		x.conds[i] = ib.cond(m)
		if m.anyHost {
			if x.any < 0 {
				x.any = ib.newBucket()
			}
			ib.add(x.any, m, pos)
			continue // every other host entry of the rule is subsumed
		}
		// A rule listing the same host twice is filed once per bucket:
		// add skips a position equal to the list's last.
		for _, h := range m.exact {
			ib.add(ib.bucket(ib.hosts, h), m, pos)
		}
		for _, s := range m.suffixes {
			ib.add(ib.bucket(ib.suffixes, s), m, pos)
		}
	}
	ib.finish()
	return x
}

func (ib *indexBuilder) newBucket() int32 {
	ib.other = append(ib.other, nil)
	ib.lens = append(ib.lens, nil)
	ib.nexact = append(ib.nexact, 0)
	return int32(len(ib.other) - 1)
}

func (ib *indexBuilder) bucket(m map[string]int32, host string) int32 {
	b, ok := m[host]
	if !ok {
		b = ib.newBucket()
		m[host] = b
	}
	return b
}

// add files rule pos by its path condition, in the same precedence as
// matchPath.
func (ib *indexBuilder) add(b int32, m *matcher, pos int32) {
	switch {
	case m.pathExact != "":
		k := key{b, m.pathExact}
		if _, ok := ib.paths[k]; !ok {
			ib.nexact[b]++
		}
		ib.paths[k] = appendPos(ib.paths[k], pos)
	case m.pathPrefix != "":
		k := key{b, m.pathPrefix}
		if _, ok := ib.prefixes[k]; !ok {
			ib.lens[b] = append(ib.lens[b], uint32(len(m.pathPrefix)))
		}
		ib.prefixes[k] = appendPos(ib.prefixes[k], pos)
	default:
		ib.other[b] = appendPos(ib.other[b], pos)
	}
}

func appendPos(list []int32, pos int32) []int32 {
	if n := len(list); n > 0 && list[n-1] == pos {
		return list
	}
	return append(list, pos)
}

// cond compiles what is checked of a candidate rule.
func (ib *indexBuilder) cond(m *matcher) cond {
	c := cond{re: -1, anyMethod: len(m.methods) == 0, checked: m.extra != nil}
	var custom []span
	for _, meth := range m.methods {
		if bit := methodBit(meth); bit != 0 {
			c.methods |= bit
		} else {
			custom = append(custom, ib.text.add(meth))
		}
	}
	if len(custom) > 0 {
		c.custom = span{off: uint32(len(ib.x.methods)), n: uint32(len(custom))}
		ib.x.methods = append(ib.x.methods, custom...)
	}
	switch {
	case m.pathExact != "":
		c.kind = pathExact
	case m.pathPrefix != "":
		c.kind = pathPrefix
	case m.pathRegex != nil:
		c.kind = pathRegex
		lit, rest, ok := splitRegex(m.pathRegexSrc)
		if !ok {
			lit, rest = "", m.pathRegexSrc
		}
		c.path = ib.text.add(lit)
		if !ok || rest != "" {
			c.re = ib.regex(rest, m)
		}
	}
	return c
}

// regex returns the shared compiled form of ^(?:src)$.
func (ib *indexBuilder) regex(src string, m *matcher) int32 {
	if i, ok := ib.res[src]; ok {
		return i
	}
	re := m.pathRegex // src is the whole regex, already compiled
	if src != m.pathRegexSrc {
		var err error
		if re, err = compileFullMatch(src); err != nil {
			// splitRegex parsed src; should Compile still refuse it,
			// the rule keeps its whole regex, literal prefix included.
			return ib.regexWhole(m)
		}
	}
	i := int32(len(ib.x.res))
	ib.x.res = append(ib.x.res, re)
	ib.res[src] = i
	return i
}

func (ib *indexBuilder) regexWhole(m *matcher) int32 {
	if i, ok := ib.res[m.pathRegexSrc]; ok {
		return i
	}
	i := int32(len(ib.x.res))
	ib.x.res = append(ib.x.res, m.pathRegex)
	ib.res[m.pathRegexSrc] = i
	return i
}

// finish lays the lists out flat.
func (ib *indexBuilder) finish() {
	x := ib.x
	n := 0 // positions in all lists
	for _, l := range ib.paths {
		n += len(l)
	}
	for _, l := range ib.prefixes {
		n += len(l)
	}
	for _, l := range ib.other {
		n += len(l)
	}
	x.pos = make([]int32, 0, n)
	x.small = make([]strEntry, 0, len(ib.paths)+len(ib.prefixes))
	paths := make([]strEntry, 0, len(ib.paths))
	prefixes := make([]strEntry, 0, len(ib.prefixes))
	list := func(l []int32) span {
		s := span{off: uint32(len(x.pos)), n: uint32(len(l))}
		x.pos = append(x.pos, l...)
		return s
	}
	var hosts, suffixes []strEntry
	for h, b := range ib.hosts {
		hosts = append(hosts, strEntry{key: ib.text.add(h), val: span{off: uint32(b)}})
	}
	for s, b := range ib.suffixes {
		suffixes = append(suffixes, strEntry{key: ib.text.add(s), val: span{off: uint32(b)}})
		for len(x.suffixLens) <= len(s)/64 {
			x.suffixLens = append(x.suffixLens, 0)
		}
		x.suffixLens[len(s)/64] |= 1 << (len(s) % 64)
	}
	smallExact := make([][]strEntry, len(ib.other))
	smallPrefix := make([][]strEntry, len(ib.other))
	for k, l := range ib.paths {
		e := strEntry{bucket: k.bucket, key: ib.text.add(k.s), val: list(l)}
		if ib.nexact[k.bucket] > ib.small {
			paths = append(paths, e)
		} else {
			smallExact[k.bucket] = append(smallExact[k.bucket], e)
		}
	}
	for k, l := range ib.prefixes {
		e := strEntry{bucket: k.bucket, key: ib.text.add(k.s), val: list(l)}
		if len(ib.lens[k.bucket]) > ib.small { // lens has a length per distinct prefix until sorted
			prefixes = append(prefixes, e)
		} else {
			smallPrefix[k.bucket] = append(smallPrefix[k.bucket], e)
		}
	}
	x.buckets = make([]bucket, len(ib.other))
	for b := range x.buckets {
		bk := bucket{other: list(ib.other[b])}
		if ib.nexact[b] > ib.small {
			bk.exactHashed = true
		} else {
			bk.exact = smallEntries(&x.small, smallExact[b])
		}
		if len(ib.lens[b]) > ib.small {
			bk.prefixHashed = true
			slices.Sort(ib.lens[b])
			lens := slices.Compact(ib.lens[b])
			bk.lens = span{off: uint32(len(x.lens)), n: uint32(len(lens))}
			x.lens = append(x.lens, lens...)
		} else {
			bk.prefix = smallEntries(&x.small, smallPrefix[b])
		}
		x.buckets[b] = bk
	}
	x.text = string(ib.text.b) // the tables hash their keys from it
	x.hosts = newStrTable(x, hosts, ib.small)
	x.suffixes = newStrTable(x, suffixes, ib.small)
	x.paths = newStrTable(x, paths, ib.small)
	x.prefixes = newStrTable(x, prefixes, ib.small)
	x.small = exact(x.small)
	x.lens = exact(x.lens)
	x.methods = exact(x.methods)
	x.res = exact(x.res)
}

// smallEntries appends es to small and returns where they are. The order
// does not matter: every entry that matches is scanned.
func smallEntries(small *[]strEntry, es []strEntry) span {
	s := span{off: uint32(len(*small)), n: uint32(len(es))}
	*small = append(*small, es...)
	return s
}

// first returns the position of the first rule that matches, or -1. A
// candidate whose rule has a requestMatch matches only when accept(its
// position) is true; accept may be nil when no rule has one.
func (x *ruleIndex) first(host, path, method string, accept func(int) bool) int {
	best := len(x.conds)
	if v, ok := x.hosts.get(x, 0, host); ok {
		best = x.bucketFirst(int32(v.off), path, method, best, accept)
	}
	if len(x.suffixes.ents) > 0 {
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
			if v, ok := x.suffixes.get(x, 0, host[j:]); ok {
				best = x.bucketFirst(int32(v.off), path, method, best, accept)
			}
		}
	}
	if x.any >= 0 {
		best = x.bucketFirst(x.any, path, method, best, accept)
	}
	if best == len(x.conds) {
		return -1
	}
	return best
}

// bucketFirst returns the position of bucket b's first rule before best
// that matches path and method, else best.
func (x *ruleIndex) bucketFirst(b int32, path, method string, best int, accept func(int) bool) int {
	bk := &x.buckets[b]
	if bk.exactHashed {
		if l, ok := x.paths.get(x, b, path); ok {
			best = x.scan(l, method, best, accept)
		}
	} else {
		for i := range x.small[bk.exact.off : bk.exact.off+bk.exact.n] {
			if e := &x.small[int(bk.exact.off)+i]; int(e.key.n) == len(path) && x.str(e.key) == path {
				best = x.scan(e.val, method, best, accept)
				break // exact paths are distinct
			}
		}
	}
	if bk.prefixHashed {
		for _, n := range x.lens[bk.lens.off : bk.lens.off+bk.lens.n] {
			if int(n) > len(path) {
				break
			}
			if l, ok := x.prefixes.get(x, b, path[:n]); ok {
				best = x.scan(l, method, best, accept)
			}
		}
	} else {
		for i := range x.small[bk.prefix.off : bk.prefix.off+bk.prefix.n] {
			if e := &x.small[int(bk.prefix.off)+i]; int(e.key.n) <= len(path) && x.str(e.key) == path[:e.key.n] {
				best = x.scan(e.val, method, best, accept)
			}
		}
	}
	for _, i := range x.pos[bk.other.off : bk.other.off+bk.other.n] {
		if int(i) >= best {
			break
		}
		if c := &x.conds[i]; x.matchMethod(c, method) && x.matchPath(c, path) && (!c.checked || accept(int(i))) {
			return int(i)
		}
	}
	return best
}

// scan returns the first position in list before best whose rule accepts
// method (its path is known to match), else best.
func (x *ruleIndex) scan(list span, method string, best int, accept func(int) bool) int {
	for _, i := range x.pos[list.off : list.off+list.n] {
		if int(i) >= best {
			break
		}
		if c := &x.conds[i]; x.matchMethod(c, method) && (!c.checked || accept(int(i))) {
			return int(i)
		}
	}
	return best
}

func (x *ruleIndex) matchMethod(c *cond, method string) bool {
	if c.anyMethod {
		return true
	}
	if bit := methodBit(method); bit != 0 {
		return c.methods&bit != 0
	}
	for _, s := range x.methods[c.custom.off : c.custom.off+c.custom.n] {
		if x.str(s) == method {
			return true
		}
	}
	return false
}

// matchPath is matcher.matchPath for the rules of a bucket's other list
// (a regex, or no path condition).
func (x *ruleIndex) matchPath(c *cond, path string) bool {
	if c.kind != pathRegex {
		return true
	}
	lit := x.str(c.path)
	if !strings.HasPrefix(path, lit) {
		return false
	}
	if c.re < 0 {
		return len(path) == len(lit)
	}
	return x.res[c.re].MatchString(path[len(lit):])
}

// splitRegex splits a path regex src (matched as ^(?:src)$) into a literal
// prefix and the rest, such that ^(?:src)$ matches s exactly when s begins
// with lit and ^(?:rest)$ matches the remainder (empty rest: the remainder
// is empty). It splits only where that is plainly so: the literal is
// written as itself at the start of src, is case-sensitive and holds no
// U+FFFD (which the engine matches against any invalid byte), the rest of
// the text parses to the rest of the whole regex's syntax tree, and the
// rest has no empty-width assertion (^, $, \A, \z, \b, \B), which could
// see the literal before it. ok is false when src is not split.
func splitRegex(src string) (lit, rest string, ok bool) {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return "", "", false
	}
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	if len(subs) == 0 || subs[0].Op != syntax.OpLiteral || subs[0].Flags&syntax.FoldCase != 0 {
		return "", "", false
	}
	lit = string(subs[0].Rune)
	if !strings.HasPrefix(src, lit) {
		return "", "", false // written with escapes
	}
	if strings.ContainsRune(lit, utf8.RuneError) {
		// The engine decodes an invalid byte as U+FFFD, so the literal
		// matches more than its own bytes, which is all HasPrefix sees.
		return "", "", false
	}
	rest, tail := src[len(lit):], subs[1:]
	if rest == "" || len(tail) == 0 {
		return lit, "", rest == "" && len(tail) == 0
	}
	got, err := syntax.Parse(rest, syntax.Perl)
	if err != nil {
		return "", "", false
	}
	want := tail[0]
	if len(tail) > 1 {
		want = &syntax.Regexp{Op: syntax.OpConcat, Flags: re.Flags, Sub: tail}
	}
	if !got.Equal(want) || hasAssertion(got) {
		return "", "", false
	}
	return lit, rest, true
}

func hasAssertion(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true
	}
	return slices.ContainsFunc(re.Sub, hasAssertion)
}
