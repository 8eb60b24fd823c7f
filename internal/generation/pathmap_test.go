package generation

import "testing"

func TestPathMap(t *testing.T) {
	m := &PathMap{BaseDir: "/root"}
	for _, v := range []string{"/etc/keys=local/keys", "/etc/rl=/abs/rl"} {
		if err := m.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ give, want string }{
		{"/etc/keys/a.pem", "local/keys/a.pem"},
		{"/etc/keys", "local/keys"},
		{"/etc/rl/", "/abs/rl/"}, // a directory stays one
		{"/etc/keysX/a.pem", "/root/etc/keysX/a.pem"},
		{"/etc/keys/../other", "/root/etc/other"}, // cleaned before matching
		{"/x/y", "/root/x/y"},
		{"relative/y", "relative/y"},
		{"", ""},
	} {
		if got := m.remap(tt.give); got != tt.want {
			t.Errorf("%q: %q, want %q", tt.give, got, tt.want)
		}
	}
	for _, bad := range []string{"noequals", "rel=x", "/a="} {
		if err := m.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	// Only file fields are rewritten: a policy path is not a file.
	cfg, err := Parse("c.yaml", []byte(`
authenticators:
  - name: k
    source: {header: x-api-key}
    api_key: {file: /etc/keys/api.yaml}
policy:
  rules:
    - name: r
      match: {path: {exact: /etc/keys/x}}
      action: allow
rate_limit:
  files: [/etc/rl/]
`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	m.Apply(cfg)
	if got := cfg.Authenticators[0].APIKey.File; got != "local/keys/api.yaml" {
		t.Errorf("api_key.file = %q", got)
	}
	if got := cfg.RateLimit.Files; len(got) != 1 || got[0] != "/abs/rl/" {
		t.Errorf("rate_limit.files = %q", got)
	}
	if got := cfg.Policy.Rules[0].Match.Path.Exact; got != "/etc/keys/x" {
		t.Errorf("policy path rewritten: %q", got)
	}
}
