package envoyconfig

import (
	"bytes"
	"strings"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlconfig "github.com/envoyproxy/ratelimit/src/config"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// compiled is the descriptor tree of envoyproxy/ratelimit's config, built
// once at load so that Match needs neither the library's GetLimit (a dozen
// allocations per call: metric-key builders, a copied RateLimit) nor a
// cache in front of it.
//
// It keeps the library's lookup exactly (see GetLimit in
// envoyproxy/ratelimit src/config/config_impl.go), including its quirks,
// because a gateway that moves between the two must see the same limits:
//   - a level's children are keyed by the config's key, or key + "_" +
//     value; a request entry is looked up as key + "_" + value first (so
//     key "a", value "b_c" finds config key "a_b", value "c"), then by the
//     wildcard keys of the level in file order (prefix match of
//     key_value against the pattern without its final "*"), then by key
//     alone (the default for any value);
//   - a limit applies only when it stands on the level of the last entry;
//     the walk stops at a level without children;
//   - share_threshold records, per entry matched through a wildcard whose
//     descriptor sets it, the pattern's value part.
//
// The metric names (detailed_metric, value_to_metric) do not affect which
// limit applies, and this service keeps no per-descriptor stats, so they
// are not compiled.
type compiled struct {
	domains map[string]*node
}

type node struct {
	children map[string]*node
	// wildcards are the keys of children that end in "*", in file order,
	// with prefixes their patterns without the "*".
	wildcards []wildcard
	// prefixes indexes wildcards by their prefixes when there are many.
	prefixes *prefixTrie
	// limit is the rate_limit on this node, Policy and SharedValues filled
	// for the usual case; nil when the node has none.
	limit *ratelimit.Limit
	// keys are the config keys from the domain down to this node, the
	// ones limit.Policy names when the limit is unnamed.
	keys []string
	// sharePattern is the descriptor's key_value pattern (ending in "*")
	// when it sets share_threshold, else "".
	sharePattern string
}

type wildcard struct {
	finalKey string
	prefix   string
}

// compile builds the tree from the YAML roots that NewRateLimitConfigImpl
// accepted; it repeats none of the library's validation.
func compile(roots []*rlconfig.YamlRoot) *compiled {
	c := &compiled{domains: make(map[string]*node, len(roots))}
	for _, r := range roots {
		n := c.domains[r.Domain]
		if n == nil {
			n = &node{}
			c.domains[r.Domain] = n
		}
		n.load(r.Domain, nil, r.Descriptors)
	}
	return c
}

func (n *node) load(domain string, keys []string, ds []rlconfig.YamlDescriptor) {
	if len(ds) > 0 && n.children == nil {
		n.children = make(map[string]*node, len(ds))
	}
	for _, d := range ds {
		finalKey := d.Key
		if d.Value != "" {
			finalKey += "_" + d.Value
		}
		path := append(keys[:len(keys):len(keys)], d.Key)
		child := &node{keys: path} // children: nil for a leaf
		if d.ShareThreshold && strings.HasSuffix(finalKey, "*") {
			child.sharePattern = finalKey
		}
		if d.RateLimit != nil {
			child.limit = newLimit(domain, path, d)
		}
		if strings.HasSuffix(finalKey, "*") {
			n.wildcards = append(n.wildcards, wildcard{finalKey: finalKey, prefix: strings.TrimSuffix(finalKey, "*")})
		}
		child.load(domain, path, d.Descriptors)
		n.children[finalKey] = child
	}
	if len(n.wildcards) > linearWildcards {
		n.prefixes = &prefixTrie{first: -1}
		for i, w := range n.wildcards {
			n.prefixes.add(w.prefix, i)
		}
	}
}

// linearWildcards is how many wildcards a level scans in order before it
// indexes them.
const linearWildcards = 8

// prefixTrie finds, among the wildcard prefixes a key starts with, the
// one first in the file, in one pass over the key.
type prefixTrie struct {
	labels []byte // next byte of each child; few, so scanned
	kids   []*prefixTrie
	first  int // index in wildcards of the prefix ending here, or -1
}

func (t *prefixTrie) add(prefix string, i int) {
	for j := 0; j < len(prefix); j++ {
		k := bytes.IndexByte(t.labels, prefix[j])
		if k < 0 {
			t.labels = append(t.labels, prefix[j])
			t.kids = append(t.kids, &prefixTrie{first: -1})
			k = len(t.kids) - 1
		}
		t = t.kids[k]
	}
	if t.first < 0 || i < t.first {
		t.first = i
	}
}

// find returns the index of the first wildcard whose prefix kv starts
// with, or -1.
func (t *prefixTrie) find(kv []byte) int {
	best := t.first
	for _, b := range kv {
		k := bytes.IndexByte(t.labels, b)
		if k < 0 {
			break
		}
		t = t.kids[k]
		if t.first >= 0 && (best < 0 || t.first < best) {
			best = t.first
		}
	}
	return best
}

// findWildcard is the library's scan of the level's wildcard keys in file
// order.
func (n *node) findWildcard(kv []byte) *node {
	if n.prefixes != nil {
		if i := n.prefixes.find(kv); i >= 0 {
			return n.children[n.wildcards[i].finalKey]
		}
		return nil
	}
	for _, w := range n.wildcards {
		if len(kv) >= len(w.prefix) && string(kv[:len(w.prefix)]) == w.prefix {
			return n.children[w.finalKey]
		}
	}
	return nil
}

func newLimit(domain string, keys []string, d rlconfig.YamlDescriptor) *ratelimit.Limit {
	rl := d.RateLimit
	// As the library: an unknown unit is "UNKNOWN" (0), accepted only
	// with unlimited.
	unit, _ := unitFromProto(pb.RateLimitResponse_RateLimit_Unit(pb.RateLimitResponse_RateLimit_Unit_value[strings.ToUpper(rl.Unit)]))
	replaces := make([]string, len(rl.Replaces))
	for i, e := range rl.Replaces {
		replaces[i] = e.Name
	}
	l := &ratelimit.Limit{
		Name:      rl.Name,
		Policy:    rl.Name,
		Requests:  rl.RequestsPerUnit,
		Unit:      unit,
		Unlimited: rl.Unlimited,
		// quota_mode, like shadow_mode, reports over-limit but allows:
		// envoyproxy/ratelimit answers OK for it and only records the
		// violation in dynamic metadata.
		Shadow:   d.ShadowMode || d.QuotaMode,
		Replaces: replaces,
	}
	if l.Policy == "" {
		l.Policy = domain + "." + strings.Join(keys, ".")
	}
	return l
}

// maxKeyLen bounds the stack buffer for key_value lookups; longer ones
// are built on the heap.
const maxKeyLen = 256

// match is GetLimit without a limit override (Match never has one).
func (c *compiled) match(domain string, entries []ratelimit.Entry) *ratelimit.Limit {
	n := c.domains[domain]
	if n == nil || len(entries) == 0 {
		return nil
	}
	var shared []string // nil unless an entry matched a share_threshold wildcard
	var buf [maxKeyLen]byte
	for i, e := range entries {
		kv := append(buf[:0], e.Key...)
		kv = append(kv, '_')
		kv = append(kv, e.Value...)
		next := n.children[string(kv)]
		viaWildcard := false
		if next == nil && len(n.wildcards) > 0 {
			next = n.findWildcard(kv)
			viaWildcard = next != nil
		}
		if next == nil {
			next = n.children[e.Key]
		}
		if next == nil {
			return nil
		}
		if viaWildcard && next.sharePattern != "" {
			if shared == nil {
				shared = make([]string, len(entries))
			}
			shared[i] = strings.TrimPrefix(next.sharePattern, e.Key+"_")
		}
		if i < len(entries)-1 && len(next.children) == 0 {
			return nil
		}
		n = next
	}
	// n is the level of the last entry.
	if n.limit == nil {
		return nil
	}
	return n.result(domain, entries, shared)
}

// result is the node's limit for a match of entries, shared unless the
// match needs its own SharedValues or Policy.
func (n *node) result(domain string, entries []ratelimit.Entry, shared []string) *ratelimit.Limit {
	l := n.limit
	samePolicy := l.Name != "" || sameKeys(n.keys, entries)
	if shared == nil && samePolicy {
		return l
	}
	cp := *l
	cp.SharedValues = shared
	if !samePolicy {
		cp.Policy = policyName(domain, entries)
	}
	return &cp
}

// sameKeys: the request's keys are the config's (they differ only when a
// key_value lookup met a config key with "_" in it).
func sameKeys(keys []string, entries []ratelimit.Entry) bool {
	if len(keys) != len(entries) {
		return false
	}
	for i, k := range keys {
		if entries[i].Key != k {
			return false
		}
	}
	return true
}
