package generation

import (
	"crypto/sha256"
	"encoding/json"
	"slices"

	"github.com/ext-authz/ext-authz/authz"
)

// DescribeChanges says, for the reload log line, what the new generation
// changed: rules and authenticators added, removed or changed, which
// authenticators were rebuilt and which kept their state, and which
// referenced files changed. Names only: never a key, token or config value.
func DescribeChanges(old, next *Generation) []any {
	var out []any
	add := func(k string, v []string) {
		if len(v) > 0 {
			out = append(out, k, v)
		}
	}
	added, removed, changed := diffByName(rulesByName(old), rulesByName(next))
	add("rules_added", added)
	add("rules_removed", removed)
	add("rules_changed", changed)

	oldAuths, nextAuths := authsByName(old), authsByName(next)
	added, removed, changed = diffByName(oldAuths, nextAuths)
	add("authenticators_added", added)
	add("authenticators_removed", removed)
	// changed here means a new verifier: its config or its files changed.
	add("authenticators_rebuilt", changed)

	var keysAdded, keysRemoved []string
	for i := range next.Auths {
		a := &next.Auths[i]
		prev := authNamed(old, a.Config.Name)
		if prev == nil || prev.Key == a.Key {
			continue // new (listed above), or the same verifier: no key changed
		}
		plus, minus := diffCounts(prev.keys(), a.keys())
		for _, k := range plus {
			keysAdded = append(keysAdded, a.Config.Name+": "+k)
		}
		for _, k := range minus {
			keysRemoved = append(keysRemoved, a.Config.Name+": "+k)
		}
	}
	addCapped := func(k string, v []string) {
		if len(v) > maxLoggedKeys {
			out = append(out, k+"_total", len(v))
			v = append(v[:maxLoggedKeys:maxLoggedKeys], "...")
		}
		add(k, v)
	}
	addCapped("keys_added", keysAdded)
	addCapped("keys_removed", keysRemoved)

	var files []string
	for p, d := range next.Files {
		if od, ok := old.Files[p]; ok && od != d {
			files = append(files, p)
		}
	}
	slices.Sort(files)
	add("files_changed", files)
	return out
}

func rulesByName(g *Generation) map[string]string { return g.rules }

// ruleDigests maps each rule's name to a digest of its configuration.
func ruleDigests(rules []authz.RuleConfig) map[string]string {
	m := make(map[string]string, len(rules))
	for _, r := range rules {
		b, _ := json.Marshal(r)
		sum := sha256.Sum256(b)
		m[r.Name] = string(sum[:])
	}
	return m
}

func authsByName(g *Generation) map[string]string {
	m := make(map[string]string, len(g.Auths))
	for _, a := range g.Auths {
		m[a.Config.Name] = a.Key
	}
	return m
}

// diffByName compares two name → value maps.
func diffByName(old, next map[string]string) (added, removed, changed []string) {
	for n, v := range next {
		ov, ok := old[n]
		switch {
		case !ok:
			added = append(added, n)
		case ov != v:
			changed = append(changed, n)
		}
	}
	for n := range old {
		if _, ok := next[n]; !ok {
			removed = append(removed, n)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	return added, removed, changed
}

// maxLoggedKeys bounds the key names one reload line lists; past it the
// line says how many there were (a replaced file of a million keys must
// not make a line of a million names).
const maxLoggedKeys = 50

// authNamed is g's authenticator called name, or nil.
func authNamed(g *Generation, name string) *Auth {
	for i := range g.Auths {
		if g.Auths[i].Config.Name == name {
			return &g.Auths[i]
		}
	}
	return nil
}

// diffCounts compares two lists as multisets (two keys may share a
// subject): what next has more of, and what it has fewer of.
func diffCounts(old, next []string) (added, removed []string) {
	n := map[string]int{}
	for _, s := range next {
		n[s]++
	}
	for _, s := range old {
		n[s]--
	}
	for s, c := range n {
		for ; c > 0; c-- {
			added = append(added, s)
		}
		for ; c < 0; c++ {
			removed = append(removed, s)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}
