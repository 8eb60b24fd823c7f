package authz

import (
	"strings"
	"testing"
)

// TestRegexMustStandAlone: a regex is matched against the whole value, as
// Envoy's safe_regex does, so a source that only compiles once wrapped in
// ^(?:…)$ (it closes the wrapper's group and escapes the anchors) is a
// config error, in every place a regex is configured.
func TestRegexMustStandAlone(t *testing.T) {
	for _, src := range []string{`a)|(.*`, `x)|(?:.*`, `)(`, `a))|((b`, `\`} {
		if _, err := compileFullMatch(src); err == nil {
			t.Errorf("%q compiled; it would match more than it reads", src)
		}
		rule := RuleConfig{Name: "r", Match: MatchConfig{Path: PathMatch{Regex: src}}, Action: ActionAllow}
		if _, err := NewPipeline(Config{Rules: []RuleConfig{rule}}, nil, Options{}); err == nil || !strings.Contains(err.Error(), "path.regex") {
			t.Errorf("rule with path.regex %q: err = %v, want a path.regex error", src, err)
		}
	}
	re, err := compileFullMatch(`/api/(v1|v2)/.*`)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{"/api/v1/x": true, "/api/v3/x": false, "/x/api/v1/": false, "/api/v2/": true} {
		if re.MatchString(path) != want {
			t.Errorf("%q: match = %v, want %v", path, !want, want)
		}
	}
}

// TestRegexQuotedToTheEnd: RE2 (Envoy) and Go read \Q without \E as a
// literal to the end of the regex. Wrapped in ^(?:…)$, such a \Q would
// quote the wrapper's ")$" too, so a valid regex would be refused, or
// the index's split rest fall back to the whole regex; it matches as the
// literal it reads.
func TestRegexQuotedToTheEnd(t *testing.T) {
	tests := []struct {
		give string
		want map[string]bool
	}{
		{`/a\Q.*`, map[string]bool{"/a.*": true, "/ab": false, "/a.*)$": false}},
		{`/a/[0-9]+\Q(x)`, map[string]bool{"/a/12(x)": true, "/a/12x": false, "/a/(x)": false}},
		{`\Q/a|b`, map[string]bool{"/a|b": true, "/a": false, "b": false}},
		{`/a\Q`, map[string]bool{"/a": true, "/a\\Q": false}},
	}
	for _, tt := range tests {
		re, err := compileFullMatch(tt.give)
		if err != nil {
			t.Errorf("%q: %v", tt.give, err)
			continue
		}
		for path, want := range tt.want {
			if re.MatchString(path) != want {
				t.Errorf("%q on %q: match = %v, want %v", tt.give, path, !want, want)
			}
			checkSplit(t, tt.give, path)
		}
	}
	for _, src := range []string{`/a\E`, `/a\Q.*\E\E`} {
		if _, err := compileFullMatch(src); err == nil {
			t.Errorf("%q compiled: \\E outside \\Q is not a regex", src)
		}
	}
	re, err := compileFullMatch(`/a\Q)|(.*\E`)
	if err != nil || re.MatchString("/ab") || !re.MatchString("/a)|(.*") {
		t.Errorf("a quote closed in the regex: %v, %v", re, err)
	}
}
