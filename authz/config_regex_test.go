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
