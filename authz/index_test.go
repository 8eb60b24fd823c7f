package authz

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// The rule index must pick exactly the rule the linear scan of the rules'
// matchers picks: the same position, or no rule for both, for every host, path and method, and
// Pipeline.match must give the same rule and reason with both (it also
// looks up the servlet reading of ";" paths and override methods).

// Pools small enough that random rule sets overlap a lot: the same host
// exact and as a wildcard, nested prefixes, exact paths inside prefixes,
// regexes that cover prefixes, ";" parameters, methods in any case.
var (
	genRuleHosts = []string{"a.com", "b.a.com", "x.b.a.com", "*.a.com", "*.b.a.com", "*.com", "*", "c.org",
		"*.org", "A.Com", "a.com.", "a.com:8443", "[::1]", "xa.com", "*.c.org"}
	genReqHosts = []string{"a.com", "b.a.com", "x.b.a.com", "y.x.b.a.com", "com", "c.org", "d.c.org", "org",
		"", "xa.com", "a.com.b", ".a.com", "..a.com", "a..com", "[::1]", "b.xa.com", "e.d.c.org"}
	genExact = []string{"/", "/a", "/a/", "/a/b", "/a/b/c", "/b", "/ab", "/a;x/b", "/a/b;y"}
	genPref  = []string{"/", "/a", "/a/", "/ab", "/a/b", "/a/b/", "/b", "/a;", "/a;x/"}
	genRegex = []string{"/a.*", "/[ab]+", "/a/b(/.*)?", ".*;.*", "/a/b", "(/a)?/b", "/[^/]*", "/a/?", ".*",
		"/a/[0-9]+", "/b/[0-9]+", "/a/b/?", `/a\.b`, "(?i)/AB", "/a(?i)B", `/a\b.*`, "/a$", "/ab*", "/a|/b"}
	genReqPaths = []string{"/", "/a", "/a/", "/ab", "/abc", "/a/b", "/a/b/", "/a/b/c", "/a;x/b", "/a/b;y",
		"/a;x", "/a;x/b;y/c", "/b", "/b;q", "/c", "", "/a/b/c;z/d", "/a;", "/a/12", "/b/7", "/a.b", "/AB", "/aB", "/abbb"}
	genMethods    = [][]string{nil, {"GET"}, {"post"}, {"GET", "POST"}, {"PUT", "DELETE", "GET"}, {"get", "GET"}, {"PURGE"}, {"purge", "TRACE"}}
	genReqMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "PURGE"}
	genOverrides  = [][]string{nil, {"POST"}, {"GET", "PUT"}, {"DELETE"}}
	genCIDRs      = []string{"10.0.0.0/8", "192.168.0.0/16", "::/0"}
	genRoutes     = []string{"a", "b"}
	// genWhens are match.when conditions: true, false and failing (the
	// route is absent from some requests) on the generated requests.
	genWhens = []string{"request.context_extensions['route'] == 'a'", "request.path.size() > 2",
		"ip(request.client_address).in_cidr('10.0.0.0/8')", "request.method != 'GET'"}
	// genClients are (peer address, route) pairs of requests.
	genClients = [][2]string{{"10.1.2.3", "a"}, {"192.168.1.1", "b"}, {"2001:db8::1", ""}, {"", "-"}}
)

// genAccept is a requestMatch stand-in for comparing first: a fixed
// function of the rule and the request, so both scans see the same one.
func genAccept(host, path, method string) func(int) bool {
	return func(i int) bool { return (i*7+len(host)*3+len(path)+len(method))%3 != 0 }
}

// ruleGen draws choices from a byte string (the fuzzer's input) or, when
// that runs out or is absent, from a seeded generator.
type ruleGen struct {
	data []byte
	rnd  *rand.Rand
}

func (g *ruleGen) intn(n int) int {
	if len(g.data) > 0 {
		v := int(g.data[0])
		g.data = g.data[1:]
		return v % n
	}
	if g.rnd == nil {
		return 0
	}
	return g.rnd.IntN(n)
}

func pick[T any](g *ruleGen, xs []T) T { return xs[g.intn(len(xs))] }

// rules compiles up to n random rules; ones the validator refuses (a path
// not in canonical form) are left out, as NewPipeline would refuse them.
func (g *ruleGen) rules(n int) []*matcher {
	var out []*matcher
	for range n {
		var mc MatchConfig
		for range g.intn(4) { // 0 hosts: any host
			mc.Hosts = append(mc.Hosts, pick(g, genRuleHosts))
		}
		switch g.intn(4) {
		case 0:
			mc.Path.Exact = pick(g, genExact)
		case 1:
			mc.Path.Prefix = pick(g, genPref)
		case 2:
			mc.Path.Regex = pick(g, genRegex)
		}
		mc.Methods = pick(g, genMethods)
		// Matchers beyond host, path and method (requestMatch), which the
		// index checks on its candidates.
		switch g.intn(8) {
		case 0:
			mc.ClientCIDRs = []string{pick(g, genCIDRs)}
		case 1:
			mc.ContextExtensions = map[string]string{"route": pick(g, genRoutes)}
		case 2:
			mc.When = []string{pick(g, genWhens)}
		}
		m, err := compileMatch(&mc)
		if err != nil {
			continue
		}
		out = append(out, m)
	}
	return out
}

// testPipelines returns a pipeline of allow rules with the matchers ms
// deciding by the index, and one deciding by the linear scan.
func testPipelines(ms []*matcher) (linear, indexed *Pipeline) {
	return testPipelinesSmall(ms, smallBucket)
}

// testPipelinesSmall is testPipelines with the index keeping up to small
// paths of a bucket in lists (0: every bucket hashed).
func testPipelinesSmall(ms []*matcher, small int) (linear, indexed *Pipeline) {
	var text textBuilder
	rules := make([]ruleEntry, len(ms))
	var extras []rule
	for i := range rules {
		rules[i] = ruleEntry{name: text.add("r" + itoa(i)), extra: -1}
		if ms[i].extra != nil {
			rules[i].extra = int32(len(extras))
			extras = append(extras, rule{match: ms[i].extra})
		}
	}
	x := newRuleIndexSmall(ms, &text, small)
	checked := len(extras) > 0
	return &Pipeline{rules: rules, extras: extras, index: x, linear: ms, checked: checked},
		&Pipeline{rules: rules, extras: extras, index: x, checked: checked}
}

// checkIndex compares the index with the linear scan on every request the
// pools make, and returns how many lookups matched a rule.
// Every bucket is checked both as short lists and as hash tables.
func checkIndex(t *testing.T, rules []*matcher, extraHosts, extraPaths []string) int {
	t.Helper()
	matched := checkIndexSmall(t, rules, extraHosts, extraPaths, smallBucket)
	if checkIndexSmall(t, rules, extraHosts, extraPaths, 0) != matched {
		t.Fatal("the hashed index matched a different number of lookups")
	}
	return matched
}

func checkIndexSmall(t *testing.T, rules []*matcher, extraHosts, extraPaths []string, small int) int {
	t.Helper()
	linear, indexed := testPipelinesSmall(rules, small)
	hosts := append(append([]string(nil), genReqHosts...), extraHosts...)
	paths := append(append([]string(nil), genReqPaths...), extraPaths...)
	matched := 0
	for _, h := range hosts {
		for _, path := range paths {
			for _, meth := range genReqMethods {
				acc := genAccept(h, path, meth)
				want := linear.first(h, path, meth, acc)
				if got := indexed.first(h, path, meth, acc); got != want {
					t.Fatalf("first(%q, %q, %q) (small %d) = %s, linear scan: %s\nrules:\n%s", h, path, meth, small,
						ruleDesc(rules, got), ruleDesc(rules, want), rulesDesc(rules))
				}
				if want >= 0 {
					matched++
				}
			}
			for k, ov := range genOverrides {
				cl := genClients[(k+len(path))%len(genClients)]
				r := &Request{Host: h, Path: path, Method: "GET", PeerAddress: cl[0], ContextExtensions: map[string]string{"route": cl[1]}}
				if cl[1] == "-" {
					r.ContextExtensions = nil
				}
				lst, ist := &matchState{errPos: -1}, &matchState{errPos: -1}
				wantRule, wantReason := linear.match(r, ov, lst)
				gotRule, gotReason := indexed.match(r, ov, ist)
				// A failing condition denies when its rule comes before
				// the winner (of a request not refused as ambiguous, which
				// Decide refuses first): both scans must find that one.
				if wantReason == "" && gotReason == "" && effectiveErr(lst, wantRule) != effectiveErr(ist, gotRule) {
					t.Fatalf("match(%q, %q, %v): failing condition at %d, linear scan: %d\nrules:\n%s", h, path, cl,
						effectiveErr(ist, gotRule), effectiveErr(lst, wantRule), rulesDesc(rules))
				}
				if gotRule != wantRule || gotReason != wantReason {
					t.Fatalf("match(%q, %q, %v, overrides %v) = %s %q, linear scan: %s %q\nrules:\n%s", h, path, cl, ov,
						ruleDesc(rules, gotRule), gotReason, ruleDesc(rules, wantRule), wantReason, rulesDesc(rules))
				}
			}
		}
	}
	return matched
}

// effectiveErr is the failing condition's rule that denies a match of
// winner (Decide's rule), or -1.
func effectiveErr(st *matchState, winner int) int {
	if st.errPos >= 0 && (winner < 0 || st.errPos < winner) {
		return st.errPos
	}
	return -1
}

func ruleDesc(rules []*matcher, i int) string {
	switch {
	case i < 0:
		return "no rule"
	case i >= len(rules):
		return "a rule not in the set"
	}
	return "rules[" + itoa(i) + "]"
}

func rulesDesc(rules []*matcher) string {
	var b strings.Builder
	for i := range rules {
		b.WriteString("  [" + itoa(i) + "] " + rules[i].String() + "\n")
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestRuleIndexMatchesLinearScan(t *testing.T) {
	rnd := rand.New(rand.NewPCG(20, 2026))
	matched, total := 0, 0
	for range 400 {
		g := &ruleGen{rnd: rnd}
		rules := g.rules(1 + rnd.IntN(40))
		matched += checkIndex(t, rules, nil, nil)
		total += len(genReqHosts) * len(genReqPaths) * len(genReqMethods)
	}
	// The comparison means something only if both outcomes are common.
	if matched < total/10 || matched > total*9/10 {
		t.Fatalf("%d of %d lookups matched a rule: the generator is not exercising both outcomes", matched, total)
	}
}

// TestRuleIndexCases pins overlaps where an index could pick a later rule
// or none, each against the linear scan and against the rule it must be.
func TestRuleIndexCases(t *testing.T) {
	mk := func(specs ...MatchConfig) []*matcher {
		var rs []*matcher
		for i := range specs {
			m, err := compileMatch(&specs[i])
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, m)
		}
		return rs
	}
	tests := []struct {
		name               string
		rules              []MatchConfig
		host, path, method string
		want               int // -1: none
	}{
		{"regex before exact", []MatchConfig{{Path: PathMatch{Regex: "/a.*"}}, {Path: PathMatch{Exact: "/a/b"}}}, "h", "/a/b", "GET", 0},
		{"exact before regex", []MatchConfig{{Path: PathMatch{Exact: "/a/b"}}, {Path: PathMatch{Regex: "/a.*"}}}, "h", "/a/b", "GET", 0},
		{"longer prefix first", []MatchConfig{{Path: PathMatch{Prefix: "/a/b"}}, {Path: PathMatch{Prefix: "/a"}}}, "h", "/a/b/c", "GET", 0},
		{"shorter prefix first", []MatchConfig{{Path: PathMatch{Prefix: "/a"}}, {Path: PathMatch{Prefix: "/a/b"}}}, "h", "/a/b/c", "GET", 0},
		{"prefix is not segment aligned", []MatchConfig{{Path: PathMatch{Prefix: "/a"}}}, "h", "/ab", "GET", 0},
		{"method skips earlier rule", []MatchConfig{{Path: PathMatch{Prefix: "/a"}, Methods: []string{"POST"}}, {Path: PathMatch{Exact: "/a"}}}, "h", "/a", "GET", 1},
		{"any host after exact host", []MatchConfig{{Hosts: []string{"a.com"}, Path: PathMatch{Exact: "/x"}}, {Path: PathMatch{Exact: "/x"}}}, "a.com", "/x", "GET", 0},
		{"any host before exact host", []MatchConfig{{Path: PathMatch{Exact: "/x"}}, {Hosts: []string{"a.com"}, Path: PathMatch{Exact: "/x"}}}, "a.com", "/x", "GET", 0},
		{"wildcard not apex", []MatchConfig{{Hosts: []string{"*.a.com"}}}, "a.com", "/", "GET", -1},
		{"wildcard any depth", []MatchConfig{{Hosts: []string{"*.a.com"}}}, "x.y.a.com", "/", "GET", 0},
		{"wildcard label aligned", []MatchConfig{{Hosts: []string{"*.a.com"}}}, "xa.com", "/", "GET", -1},
		{"inner wildcard before outer", []MatchConfig{{Hosts: []string{"*.com"}, Methods: []string{"PUT"}}, {Hosts: []string{"*.b.a.com"}}, {Hosts: []string{"*.a.com"}}}, "x.b.a.com", "/", "GET", 1},
		{"outer wildcard before inner", []MatchConfig{{Hosts: []string{"*.com"}}, {Hosts: []string{"*.b.a.com"}}}, "x.b.a.com", "/", "GET", 0},
		{"host listed twice", []MatchConfig{{Hosts: []string{"a.com", "A.COM", "*.com"}, Methods: []string{"POST"}}, {Hosts: []string{"a.com"}}}, "a.com", "/", "GET", 1},
		{"no match", []MatchConfig{{Hosts: []string{"a.com"}}, {Path: PathMatch{Prefix: "/b"}}}, "b.com", "/a", "GET", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := mk(tt.rules...)
			for _, small := range []int{smallBucket, 0} {
				linear, indexed := testPipelinesSmall(rules, small)
				got, lin, want := indexed.first(tt.host, tt.path, tt.method, nil), linear.first(tt.host, tt.path, tt.method, nil), tt.want
				if got != want || lin != want {
					t.Fatalf("index (small %d): %s, linear: %s, want %s", small, ruleDesc(rules, got), ruleDesc(rules, lin), ruleDesc(rules, want))
				}
			}
		})
	}
}

// TestRuleIndexLarge compares the benchmark's 10,000-rule policy on random
// requests made from its own hosts and paths (hits, near misses, misses).
func TestRuleIndexLarge(t *testing.T) {
	rules := benchMatchers(t, 10000)
	linear, indexed := testPipelines(rules)
	_, hashed := testPipelinesSmall(rules, 0)
	rnd := rand.New(rand.NewPCG(1, 2))
	hits := 0
	for range 3000 {
		r := benchRequest(len(rules), rnd.IntN(len(rules)+len(rules)/4), rnd)
		want := linear.first(r.Host, r.Path, r.Method, nil)
		if got, h := indexed.first(r.Host, r.Path, r.Method, nil), hashed.first(r.Host, r.Path, r.Method, nil); got != want || h != want {
			t.Fatalf("first(%q, %q, %q) = %s (hashed %s), linear scan: %s", r.Host, r.Path, r.Method, ruleDesc(rules, got), ruleDesc(rules, h), ruleDesc(rules, want))
		}
		if want >= 0 {
			hits++
		}
	}
	if hits < 1000 || hits > 2900 {
		t.Fatalf("%d of 3000 requests matched: not exercising both outcomes", hits)
	}
}

// FuzzRuleIndex builds a rule set and a request from the input and requires
// the index and Pipeline.match to agree with the linear scan.
func FuzzRuleIndex(f *testing.F) {
	f.Add([]byte{}, "a.com", "/a;x/b")
	f.Add([]byte{3, 0, 1, 2, 1, 3, 1, 6, 0, 4, 2, 2, 3, 1, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "x.b.a.com", "/a/b")
	f.Add([]byte{9, 2, 6, 3, 1, 1, 8, 0, 0, 2, 4, 0, 3, 2, 0, 1, 0, 5, 1, 2, 1, 0}, "d.c.org", "/ab;c")
	f.Fuzz(func(t *testing.T, data []byte, host, path string) {
		if len(data) > 256 || len(host) > 64 || len(path) > 64 {
			return // bounded work per input
		}
		g := &ruleGen{data: data}
		n := g.intn(24)
		rules := g.rules(n)
		checkIndex(t, rules, []string{host}, []string{path})
	})
}

// TestSplitRegex pins which path regexes are split into a literal prefix
// and a shared rest, and where.
func TestSplitRegex(t *testing.T) {
	tests := []struct {
		give      string
		lit, rest string
		ok        bool
	}{
		{"/r1/items/[0-9]+", "/r1/items/", "[0-9]+", true},
		{"/health", "/health", "", true},
		{"/a/b(/.*)?", "/a/b", "(/.*)?", true},
		{"/ab*", "/a", "b*", true},               // the quantified letter is not literal
		{"/a/[0-9]+/b", "/a/", "[0-9]+/b", true}, // literal text after the rest stays in it
		{"/日本/[0-9]+", "/日本/", "[0-9]+", true},
		{"/a(?i)dmin", "/a", "(?i)dmin", true}, // the flag is in the rest
		{`/a\.json`, "", "", false},            // the literal is written with an escape
		{"(?i)/admin", "", "", false},          // case-insensitive literal
		{"/a|/b", "", "", false},               // alternation: not a concatenation
		{`/a\b.*`, "", "", false},              // \b would see the literal's last byte
		{"/a$", "", "", false},                 // $ in the rest
		{"/a(^|/)b", "", "", false},            // ^ in the rest
		{".*", "", "", false},                  // no literal prefix
		{"/a)|(/b", "", "", false},             // does not parse on its own
		{"", "", "", false},                    // empty: nothing to split
		{"/a\uFFFD.*", "", "", false},          // U+FFFD also matches an invalid byte
		{"/a/\uFFFD", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			lit, rest, ok := splitRegex(tt.give)
			if lit != tt.lit || rest != tt.rest || ok != tt.ok {
				t.Fatalf("splitRegex(%q) = %q, %q, %v; want %q, %q, %v", tt.give, lit, rest, ok, tt.lit, tt.rest, tt.ok)
			}
		})
	}
}

// splitMatches is how the index matches a split regex.
func splitMatches(t *testing.T, lit, rest, path string) bool {
	t.Helper()
	after, ok := strings.CutPrefix(path, lit)
	if !ok {
		return false
	}
	if rest == "" {
		return after == ""
	}
	re, err := compileFullMatch(rest) // as the index compiles it
	if err != nil {
		t.Fatalf("the rest %q does not compile: %v", rest, err)
	}
	return re.MatchString(after)
}

// checkSplit requires the split form of src to match path exactly when
// the whole regex does.
func checkSplit(t *testing.T, src, path string) (split bool) {
	t.Helper()
	lit, rest, ok := splitRegex(src)
	if !ok {
		return false
	}
	whole, err := compileFullMatch(src)
	if err != nil {
		return false // the validator refuses it; never split
	}
	if want, got := whole.MatchString(path), splitMatches(t, lit, rest, path); got != want {
		t.Fatalf("regex %q (split %q + %q) on %q: split %v, whole %v", src, lit, rest, path, got, want)
	}
	return true
}

var splitRegexes = []string{"/r1/items/[0-9]+", "/health", "/a/b(/.*)?", "/ab*", "/a/[0-9]+/b", "/a(?i)dmin",
	"/a/(x|y)", "/a/(?:x|y)+", "/a/.", "/a/\\pL+", "/a/[^/]+/b", "/a/b{2,3}", "/a/(?s:.)", "/a/(?U)b+?",
	"/日本/.+", "/a/\\x{65e5}", "/a/(b)\\1?", "/a/[[:alpha:]]+", "/aa*", "/a/(?i:B)c",
	"/a\uFFFD", "/a/\uFFFD/.*"} // U+FFFD written as itself: the regex engine matches it against an invalid byte

var splitPaths = []string{"/r1/items/42", "/r1/items/", "/r1/items/4x", "/health", "/health/", "/a/b", "/a/b/",
	"/a/b/c", "/abbb", "/a", "/ab", "/a/7/b", "/a/7/bb", "/aDMIN", "/admin", "/a/x", "/a/xyx", "/a/\u00e9",
	"/a/\n", "/a/bbb", "/a/bbbb", "/日本/x", "/a/日", "/a/B", "/a/bc", "/a/Bc", "/a/\xff", "/a/\xc3", "/aa", "",
	"/a\xff", "/a\uFFFD", "/a/\xff/x", "/a/\xef\xbf/x"}

// TestSplitRegexMatchesWhole compares split regexes with the whole regex on
// every pool path.
func TestSplitRegexMatchesWhole(t *testing.T) {
	split := 0
	for _, src := range splitRegexes {
		for _, path := range splitPaths {
			if checkSplit(t, src, path) {
				split++
			}
		}
	}
	if split < len(splitRegexes)*len(splitPaths)/2 {
		t.Fatalf("only %d comparisons: most pool regexes should split", split)
	}
}

// FuzzSplitRegex: for any regex the validator accepts and any path, the
// split form decides as the whole regex does.
func FuzzSplitRegex(f *testing.F) {
	for i, src := range splitRegexes {
		f.Add(src, splitPaths[i%len(splitPaths)])
	}
	f.Add(`/a\b.*`, "/a")
	f.Add("/a$", "/a")
	f.Add(`/a.\Q*`, "/ab*")
	f.Add(`/a\Q.*`, "/a.*")
	f.Fuzz(func(t *testing.T, src, path string) {
		if len(src) > 64 || len(path) > 64 {
			return // bounded work per input
		}
		checkSplit(t, src, path)
	})
}
