package ratelimit

import (
	"errors"
	"slices"
	"strconv"
	"testing"
)

type keyInput struct {
	domain  string
	entries []Entry
	shared  []string
	unit    Unit
	window  int64
}

func (k keyInput) key() string {
	return string(AppendKey(nil, "rl:", k.domain, k.entries, k.shared, k.unit, k.window))
}

// effective is what a key must identify: shared values replace entry
// values (a shared "x*" and a literal value "x*" are one counter, as in
// envoyproxy/ratelimit: the literal reaches the same wildcard descriptor).
func (k keyInput) effective() []string {
	out := []string{k.domain}
	for i, e := range k.entries {
		v := "=" + e.Value
		if i < len(k.shared) && k.shared[i] != "" {
			v = "=" + k.shared[i]
		}
		out = append(out, e.Key, v)
	}
	return append(out, strconv.FormatInt(k.unit.Seconds(), 10), strconv.FormatInt(k.window, 10))
}

// decodeKey parses a key back into its parts, proving the encoding is
// injective: a key determines its input.
func decodeKey(key, prefix string) ([]string, error) {
	if len(key) < len(prefix) || key[:len(prefix)] != prefix {
		return nil, errors.New("prefix")
	}
	s := key[len(prefix):]
	part := func() (string, error) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i >= len(s) || s[i] != ':' {
			return "", errors.New("length")
		}
		n, err := strconv.Atoi(s[:i])
		if err != nil || i+1+n > len(s) {
			return "", errors.New("length")
		}
		p := s[i+1 : i+1+n]
		s = s[i+1+n:]
		return p, nil
	}
	d, err := part()
	if err != nil {
		return nil, err
	}
	out := []string{d}
	for len(s) > 0 && s[0] != '|' {
		k, err := part()
		if err != nil {
			return nil, err
		}
		v, err := part()
		if err != nil {
			return nil, err
		}
		out = append(out, k, "="+v)
	}
	if len(s) == 0 {
		return nil, errors.New("no unit")
	}
	rest := s[1:]
	i := 0
	for i < len(rest) && rest[i] != '|' {
		i++
	}
	if i == len(rest) {
		return nil, errors.New("no window")
	}
	return append(out, rest[:i], rest[i+1:]), nil
}

func TestKeyCollisionsOfEnvoyRatelimit(t *testing.T) {
	// envoyproxy/ratelimit joins with "_": these pairs share a key there.
	pairs := [][2]keyInput{
		{{domain: "d", entries: []Entry{{"a_b", "c"}}}, {domain: "d", entries: []Entry{{"a", "b_c"}}}},
		{{domain: "d_a", entries: []Entry{{"b", "c"}}}, {domain: "d", entries: []Entry{{"a_b", "c"}}}},
		{{domain: "d", entries: []Entry{{"a", "1:b"}}}, {domain: "d", entries: []Entry{{"a", "1"}, {"b", ""}}}},
		{{domain: "d", entries: []Entry{{"a", "x"}}, unit: Second}, {domain: "d", entries: []Entry{{"a", "x"}}, unit: Minute}},
	}
	for i, p := range pairs {
		p[0].unit = max(p[0].unit, Second)
		p[1].unit = max(p[1].unit, Second)
		if p[0].key() == p[1].key() {
			t.Errorf("pair %d collides: %q", i, p[0].key())
		}
	}
}

// TestSharedValueSpelledLiterally: a value counted under a share_threshold
// wildcard and a request value spelling that wildcard are one counter, as
// in envoyproxy/ratelimit (the differential test found a literal "x*" with
// a budget of its own); another value is not.
func TestSharedValueSpelledLiterally(t *testing.T) {
	shared := keyInput{domain: "d", entries: []Entry{{"a", "xy"}}, shared: []string{"x*"}, unit: Minute}
	literal := keyInput{domain: "d", entries: []Entry{{"a", "x*"}}, unit: Minute}
	other := keyInput{domain: "d", entries: []Entry{{"a", "xy"}}, unit: Minute}
	if shared.key() != literal.key() {
		t.Errorf("shared %q and literal %q are different counters", shared.key(), literal.key())
	}
	if shared.key() == other.key() {
		t.Errorf("shared and unshared xy are one counter: %q", shared.key())
	}
}

func TestWindowStart(t *testing.T) {
	tests := []struct {
		give int64
		unit Unit
		want int64
	}{
		{1_700_000_025, Second, 1_700_000_025},
		{1_700_000_025, Minute, 1_699_999_980},
		{1_700_000_025, Hour, 1_699_999_200},
		{1_700_000_025, Day, 1_699_920_000},
	}
	for _, tt := range tests {
		if got := WindowStart(tt.give, tt.unit); got != tt.want {
			t.Errorf("WindowStart(%d, %v) = %d, want %d", tt.give, tt.unit, got, tt.want)
		}
	}
}

// FuzzKey: two inputs give the same key exactly when they identify the
// same counter, and every key decodes back to its input.
func FuzzKey(f *testing.F) {
	f.Add("d", "a_b", "c", "", "", false, false, "d", "a", "b_c", "", "", false, false)
	f.Add("d", "a", "1:b", "", "", false, false, "d", "a", "1", "b", "", true, false)
	f.Add("d", "k", "v*", "", "", false, true, "d", "k", "v*", "", "", false, false)
	f.Add("", "", "", "", "", true, false, "", "", "", "", "", false, false)
	f.Fuzz(func(t *testing.T, d1, k1, v1, k2, v2 string, two1, sh1 bool, d2, k3, v3, k4, v4 string, two2, sh2 bool) {
		mk := func(d, ka, va, kb, vb string, two, shared bool) keyInput {
			in := keyInput{domain: d, entries: []Entry{{ka, va}}, unit: Minute, window: 60}
			if two {
				in.entries = append(in.entries, Entry{kb, vb})
			}
			if shared {
				in.shared = []string{va + "*"}
			}
			return in
		}
		a, b := mk(d1, k1, v1, k2, v2, two1, sh1), mk(d2, k3, v3, k4, v4, two2, sh2)
		ka, kb := a.key(), b.key()
		if same := slices.Equal(a.effective(), b.effective()); same != (ka == kb) {
			t.Fatalf("inputs equal=%v but keys equal=%v:\n%q\n%q", same, ka == kb, ka, kb)
		}
		got, err := decodeKey(ka, "rl:")
		if err != nil || !slices.Equal(got, a.effective()) {
			t.Fatalf("decode %q = %q, %v; want %q", ka, got, err, a.effective())
		}
		// Window keys: the same injectivity behind the hash tag, and one
		// tag (one Cluster slot) for every window of a descriptor.
		wa, wb := a.windowKey(SlidingWindow, Minute), b.windowKey(SlidingWindow, Minute)
		if same := slices.Equal(a.effective(), b.effective()); same != (wa == wb) {
			t.Fatalf("inputs equal=%v but window keys equal=%v:\n%q\n%q", same, wa == wb, wa, wb)
		}
		const tagged = len("rl:{0123456789abcdef}")
		if len(wa) < tagged || wa[:4] != "rl:{" || wa[tagged-1] != '}' || wa[:tagged] != a.windowKey(GCRA, Day)[:tagged] {
			t.Fatalf("window key %q: no shared hash tag", wa)
		}
		want := append(a.effective()[:len(a.effective())-2:len(a.effective())-2], "s60", "0")
		if got, err := decodeKey(wa, wa[:tagged]); err != nil || !slices.Equal(got, want) {
			t.Fatalf("decode %q = %q, %v; want %q", wa, got, err, want)
		}
	})
}

func (k keyInput) windowKey(alg Algorithm, unit Unit) string {
	return string(AppendWindowKey(nil, "rl:", k.domain, k.entries, k.shared, alg, unit, 0))
}
