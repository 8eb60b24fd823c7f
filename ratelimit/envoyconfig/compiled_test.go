package envoyconfig

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	pb_struct "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// libraryMatch is the matcher Match used before the compiled tree: it
// asks envoyproxy/ratelimit's GetLimit. It is the oracle of the
// differential tests and the baseline of the benchmarks.
func (r *Rules) libraryMatch(domain string, d *ratelimit.Descriptor) *ratelimit.Limit {
	if len(d.Entries) == 0 {
		return nil
	}
	pd := &pb_struct.RateLimitDescriptor{}
	for _, e := range d.Entries {
		pd.Entries = append(pd.Entries, &pb_struct.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value})
	}
	rl := r.cfg.GetLimit(context.Background(), domain, pd)
	if rl == nil || rl.Limit == nil {
		return nil
	}
	unit, ok := unitFromProto(rl.Limit.Unit)
	if !ok && !rl.Unlimited {
		return nil
	}
	lm := &ratelimit.Limit{
		Name:         rl.Name,
		Policy:       rl.Name,
		Requests:     rl.Limit.RequestsPerUnit,
		Unit:         unit,
		Unlimited:    rl.Unlimited,
		Shadow:       rl.ShadowMode || rl.QuotaMode,
		Replaces:     rl.Replaces,
		SharedValues: rl.ShareThresholdKeyPattern,
	}
	if lm.Policy == "" {
		lm.Policy = policyName(domain, d.Entries)
	}
	return lm
}

// cachedLibrary is the whole of the old Match: libraryMatch behind a
// bounded cache keyed by domain and entries.
type cachedLibrary struct {
	r  *Rules
	mu sync.RWMutex
	m  map[string]*ratelimit.Limit
}

func (c *cachedLibrary) match(domain string, d *ratelimit.Descriptor) *ratelimit.Limit {
	if len(d.Entries) == 0 {
		return nil
	}
	var buf [256]byte
	key := ratelimit.AppendKey(buf[:0], "", domain, d.Entries, nil, ratelimit.UnitUnknown, 0)
	c.mu.RLock()
	l, ok := c.m[string(key)]
	c.mu.RUnlock()
	if ok {
		return l
	}
	l = c.r.libraryMatch(domain, d)
	c.mu.Lock()
	if len(c.m) >= 10000 {
		clear(c.m)
	}
	c.m[string(key)] = l
	c.mu.Unlock()
	return l
}

// Alphabets small enough that generated descriptors often hit, with the
// separator "_" and "*" in keys and values to reach the library's quirks.
var (
	genKeys   = []string{"a", "b", "a_b", "k*", "user"}
	genValues = []string{"", "x", "y", "x_y", "b_x", "fo*", "*", "x*", "foo", "fo", "f"}
	genUnits  = []string{"second", "minute", "hour", "day", "WEEK", "Month", "year"}
)

// genConfig writes a random envoyproxy/ratelimit config for domain "d".
func genConfig(rnd *rand.Rand) string {
	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n")
	genDescriptors(rnd, &b, 0, 1+rnd.IntN(6))
	return b.String()
}

func genDescriptors(rnd *rand.Rand, b *strings.Builder, depth, n int) {
	ind := strings.Repeat("    ", depth)
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		k, v := genKeys[rnd.IntN(len(genKeys))], genValues[rnd.IntN(len(genValues))]
		fk := k
		if v != "" {
			fk += "_" + v
		}
		if seen[fk] {
			continue // the library rejects duplicates; keep most configs valid
		}
		seen[fk] = true
		fmt.Fprintf(b, "%s  - key: %q\n", ind, k)
		if v != "" {
			fmt.Fprintf(b, "%s    value: %q\n", ind, v)
		}
		if strings.HasSuffix(fk, "*") && rnd.IntN(2) == 0 {
			fmt.Fprintf(b, "%s    share_threshold: true\n", ind)
		}
		for _, flag := range []string{"shadow_mode", "quota_mode", "detailed_metric", "value_to_metric"} {
			if rnd.IntN(4) == 0 {
				fmt.Fprintf(b, "%s    %s: true\n", ind, flag)
			}
		}
		if rnd.IntN(3) > 0 {
			fmt.Fprintf(b, "%s    rate_limit:\n", ind)
			if rnd.IntN(5) == 0 {
				fmt.Fprintf(b, "%s      unlimited: true\n", ind)
			} else {
				fmt.Fprintf(b, "%s      unit: %s\n%s      requests_per_unit: %d\n", ind, genUnits[rnd.IntN(len(genUnits))], ind, rnd.IntN(100))
			}
			if rnd.IntN(3) == 0 {
				fmt.Fprintf(b, "%s      name: n%d_%d\n", ind, depth, i)
				if rnd.IntN(2) == 0 {
					fmt.Fprintf(b, "%s      replaces: [{name: other}]\n", ind)
				}
			}
		}
		if depth < 3 && rnd.IntN(2) == 0 {
			fmt.Fprintf(b, "%s    descriptors:\n", ind)
			genDescriptors(rnd, b, depth+1, 1+rnd.IntN(4))
		}
	}
}

func genDescriptor(rnd *rand.Rand) *ratelimit.Descriptor {
	d := &ratelimit.Descriptor{Hits: 1}
	for range 1 + rnd.IntN(4) {
		k := genKeys[rnd.IntN(len(genKeys))]
		if rnd.IntN(4) == 0 {
			k = strings.TrimSuffix(k, "*") + "_x" // a key that only wildcards or lookalikes reach
		}
		v := genValues[rnd.IntN(len(genValues))] + []string{"", "", "o", "oo", "_y", "*"}[rnd.IntN(6)]
		d.Entries = append(d.Entries, ratelimit.Entry{Key: k, Value: v})
	}
	return d
}

// checkSame fails when the compiled matcher and the library disagree on
// any descriptor of a generated config. It returns how many matched a
// limit, so the caller can check the generator reaches the interesting
// cases.
func checkSame(t testing.TB, rnd *rand.Rand, descriptors int) (configs, hits int) {
	t.Helper()
	cfg := genConfig(rnd)
	r, err := Parse([]File{{Name: "g.yaml", Content: []byte(cfg)}})
	if err != nil {
		return 0, 0 // e.g. share_threshold under a non-wildcard: not ours to match
	}
	// The same tree with every level's wildcards indexed, as levels with
	// many of them are.
	indexed, _ := Parse([]File{{Name: "g.yaml", Content: []byte(cfg)}})
	for _, n := range indexed.tree.domains {
		indexAll(n)
	}
	for range descriptors {
		d := genDescriptor(rnd)
		for _, dom := range []string{"d", "other"} {
			got, want := r.Match(dom, d), r.libraryMatch(dom, d)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("config:\n%s\ndomain %s descriptor %+v:\ncompiled %+v\nlibrary  %+v", cfg, dom, d.Entries, got, want)
			}
			if got := indexed.Match(dom, d); !reflect.DeepEqual(got, want) {
				t.Fatalf("config:\n%s\ndomain %s descriptor %+v:\nindexed %+v\nlibrary %+v", cfg, dom, d.Entries, got, want)
			}
			if got != nil {
				hits++
			}
		}
	}
	return 1, hits
}

// indexAll builds the prefix index on every level with a wildcard.
func indexAll(n *node) {
	if len(n.wildcards) > 0 {
		n.prefixes = &prefixTrie{first: -1}
		for i, w := range n.wildcards {
			n.prefixes.add(w.prefix, i)
		}
	}
	for _, c := range n.children {
		indexAll(c)
	}
}

// TestCompiledMatchesLibrary is the differential test of the compiled
// matcher against envoyproxy/ratelimit's GetLimit.
func TestCompiledMatchesLibrary(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var configs, hits int
	for range 1500 {
		c, h := checkSame(t, rnd, 50)
		configs, hits = configs+c, hits+h
	}
	if configs < 500 || hits < 500 {
		t.Fatalf("generator too weak: %d valid configs, %d matches", configs, hits)
	}
	t.Logf("%d configs, %d matching descriptors", configs, hits)
}

// TestCompiledQuirks pins the library behaviours the tree reproduces, on
// hand-written cases, each checked against the library too.
func TestCompiledQuirks(t *testing.T) {
	r, err := Parse([]File{{Name: "q.yaml", Content: []byte(`
domain: d
descriptors:
  - key: a_b
    value: c
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: w
    value: fo*
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: w
    value: f*
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: s
    value: p*
    share_threshold: true
    descriptors:
      - key: u
        rate_limit: {unit: hour, requests_per_unit: 4}
  - key: "k*"
    rate_limit: {unit: day, requests_per_unit: 5}
  - key: leaf
    rate_limit: {unit: day, requests_per_unit: 6}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		give *ratelimit.Descriptor
		want *ratelimit.Limit
	}{
		{"key_value lookalike: key a, value b_c finds a_b/c", desc("a", "b_c"),
			&ratelimit.Limit{Policy: "d.a", Requests: 1, Unit: ratelimit.Second, Replaces: []string{}}},
		{"first wildcard in file order wins", desc("w", "foo"),
			&ratelimit.Limit{Policy: "d.w", Requests: 2, Unit: ratelimit.Minute, Replaces: []string{}}},
		{"second wildcard", desc("w", "fa"),
			&ratelimit.Limit{Policy: "d.w", Requests: 3, Unit: ratelimit.Minute, Replaces: []string{}}},
		{"share_threshold above the limit", desc("s", "pq", "u", "1"),
			&ratelimit.Limit{Policy: "d.s.u", Requests: 4, Unit: ratelimit.Hour, Replaces: []string{}, SharedValues: []string{"p*", ""}}},
		{"wildcard value written literally is an exact match, not shared", desc("s", "p*", "u", "1"),
			&ratelimit.Limit{Policy: "d.s.u", Requests: 4, Unit: ratelimit.Hour, Replaces: []string{}}},
		{"wildcard key matches by key_value prefix", desc("kay", "v"),
			&ratelimit.Limit{Policy: "d.kay", Requests: 5, Unit: ratelimit.Day, Replaces: []string{}}},
		{"walk stops at a leaf", desc("leaf", "v", "more", "x"), nil},
		{"long value beyond the stack buffer", desc("w", "f"+strings.Repeat("x", 1000)),
			&ratelimit.Limit{Policy: "d.w", Requests: 3, Unit: ratelimit.Minute, Replaces: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, lib := r.Match("d", tt.give), r.libraryMatch("d", tt.give)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Match = %+v, want %+v", got, tt.want)
			}
			if !reflect.DeepEqual(got, lib) {
				t.Errorf("Match = %+v, library %+v", got, lib)
			}
		})
	}
}

// FuzzCompiledMatchesLibrary drives the generator from fuzz input.
func FuzzCompiledMatchesLibrary(f *testing.F) {
	for i := range uint64(8) {
		f.Add(i, i*7919)
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		checkSame(t, rand.New(rand.NewPCG(a, b)), 30)
	})
}

// TestMatchAllocs: a match on the compiled tree allocates nothing in the
// usual case.
func TestMatchAllocs(t *testing.T) {
	r := load(t)
	d := desc("route", "search", "user", "bob")
	if n := testing.AllocsPerRun(100, func() { r.Match("gateway", d) }); n != 0 {
		t.Fatalf("%v allocs per Match", n)
	}
}

// bigConfig has n flat descriptors, one nested and one wildcard per ten.
func bigConfig(n int) string {
	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n")
	for i := range n {
		switch i % 10 {
		case 0:
			fmt.Fprintf(&b, "  - key: route\n    value: r%d\n    descriptors:\n      - key: user\n        rate_limit: {unit: minute, requests_per_unit: %d}\n", i, i+1)
		case 1:
			fmt.Fprintf(&b, "  - key: tenant\n    value: t%d-*\n    rate_limit: {unit: hour, requests_per_unit: %d}\n", i, i+1)
		default:
			fmt.Fprintf(&b, "  - key: k%d\n    value: v\n    rate_limit: {unit: second, requests_per_unit: %d}\n", i, i+1)
		}
	}
	return b.String()
}

func BenchmarkMatch(b *testing.B) {
	gw, err := Load([]string{"../testdata/gateway.yaml"})
	if err != nil {
		b.Fatal(err)
	}
	big, err := Parse([]File{{Name: "big.yaml", Content: []byte(bigConfig(1000))}})
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name   string
		r      *Rules
		domain string
		d      *ratelimit.Descriptor
	}{
		{"one", gw, "gateway", desc("user", "alice")},
		{"nested", gw, "gateway", desc("route", "search", "user", "bob")},
		{"1000/flat", big, "d", desc("k998", "v")},
		{"1000/nested", big, "d", desc("route", "r990", "user", "bob")},
		{"1000/wildcard", big, "d", desc("tenant", "t991-x")},
		{"1000/miss", big, "d", desc("tenant", "zzz")},
	}
	for _, c := range cases {
		if !reflect.DeepEqual(c.r.Match(c.domain, c.d), c.r.libraryMatch(c.domain, c.d)) {
			b.Fatalf("%s: compiled and library disagree", c.name)
		}
		b.Run(c.name+"/impl=compiled", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.r.Match(c.domain, c.d)
			}
		})
		b.Run(c.name+"/impl=old-cached", func(b *testing.B) {
			old := &cachedLibrary{r: c.r, m: map[string]*ratelimit.Limit{}}
			b.ReportAllocs()
			for b.Loop() {
				old.match(c.domain, c.d)
			}
		})
		b.Run(c.name+"/impl=library", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.r.libraryMatch(c.domain, c.d)
			}
		})
	}
	// Distinct values, as client addresses and user ids are: more than
	// the old cache's 10,000 entries.
	users := make([]*ratelimit.Descriptor, 50000)
	for i := range users {
		users[i] = desc("route", "search", "user", "u"+strconv.Itoa(i))
	}
	b.Run("nested-50k-users/impl=compiled", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			gw.Match("gateway", users[i%len(users)])
			i++
		}
	})
	b.Run("nested-50k-users/impl=old-cached", func(b *testing.B) {
		old := &cachedLibrary{r: gw, m: map[string]*ratelimit.Limit{}}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			old.match("gateway", users[i%len(users)])
			i++
		}
	})
}
