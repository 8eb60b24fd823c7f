package yamlfile

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestExpand(t *testing.T) {
	env := map[string]string{"PASS": "s3cr3t", "HOST": "redis"}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		give, want, wantErr string
	}{
		{give: "plain", want: "plain"},
		{give: "${PASS}", want: "s3cr3t"},
		{give: "${HOST}:6379", want: "redis:6379"},
		{give: "a$${PASS}b", want: "a${PASS}b"},
		{give: "${MISSING}", wantErr: "environment variable MISSING is not set"},
		{give: "${1BAD}", wantErr: `invalid environment variable name "1BAD"`},
		{give: "${OPEN", wantErr: "unterminated"},
	}
	for _, tt := range tests {
		got, err := Expand(tt.give, getenv)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Expand(%q) error = %v, want %q", tt.give, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks a value: %v", err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", tt.give, got, err, tt.want)
		}
	}
}

type sample struct {
	Name  string            `yaml:"name"`
	Wait  time.Duration     `yaml:"wait"`
	Items []item            `yaml:"items"`
	Tags  map[string]string `yaml:"tags"`
}

type item struct {
	Secret string `yaml:"secret"`
}

const sampleYAML = `name: demo
wait: 250ms
items:
  - secret: "${PASS}"
  - secret: plain
tags:
  a: "${PASS}"
`

func TestDecode(t *testing.T) {
	var s sample
	f, err := Decode("s.yaml", []byte(sampleYAML), &s, func(string) string { return "pw" })
	if err != nil {
		t.Fatal(err)
	}
	if s.Wait != 250*time.Millisecond || s.Items[0].Secret != "pw" || s.Tags["a"] != "pw" || s.Items[1].Secret != "plain" {
		t.Fatalf("decoded %+v", s)
	}
	for path, want := range map[string]int{"name": 1, "items[1].secret": 5, "items[1]": 5, "tags.a": 7, "items[7].secret": 4, "nope": 1} {
		if got := f.Line(path); got != want {
			t.Errorf("Line(%q) = %d, want %d", path, got, want)
		}
	}
	err = f.Annotate(Wrap("items[1]", Errorf("secret", "too short")))
	if err == nil || err.Error() != "s.yaml:5: items[1].secret: too short" {
		t.Errorf("Annotate = %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ give, want string }{
		{"name: x\ncolour: red\n", `s.yaml:2: unknown field "colour" (known fields: items, name, tags, wait)`},
		{"wait: soon\n", `s.yaml:1: wait: want a duration like "250ms", got !!str "soon"`},
		{"name: [unclosed\n", "s.yaml:1: did not find expected ',' or ']'"},
		{"a:\n  - b\n c: d\n", "s.yaml:2: did not find expected key"},
		{"\tname: x\n", "s.yaml: found character that cannot start any token"},
		{"items:\n  - secret: ${NOPE}\n", "s.yaml:2: items[0].secret: environment variable NOPE is not set"},
	}
	for _, tt := range tests {
		var s sample
		_, err := Decode("s.yaml", []byte(tt.give), &s, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%q) = %v, want %q", tt.give, err, tt.want)
		}
	}
}

type server struct {
	GRPCAddress string        `yaml:"grpc_address"`
	DrainDelay  time.Duration `yaml:"drain_delay"`
	Keepalive   struct {
		Time time.Duration `yaml:"time"`
	} `yaml:"keepalive"`
	MaxStreams uint32 `yaml:"max_streams"`
	Debug      bool   `yaml:"debug"`
}

type rule struct {
	Name           string   `yaml:"name"`
	Action         string   `yaml:"action"`
	Authenticators []string `yaml:"authenticators"`
	Weight         float64  `yaml:"weight"`
}

type common struct {
	Realm string `yaml:"realm"`
}

type config struct {
	Server server            `yaml:"server"`
	Rules  []rule            `yaml:"rules"`
	Limits map[string]uint32 `yaml:"limits"`
	Extra  *common           `yaml:"extra"`
	common `yaml:",inline"`
}

// TestDecodeErrorClasses covers every class of structural mistake: each
// error names file, line and field path and says what was expected in
// words, never Go type names.
func TestDecodeErrorClasses(t *testing.T) {
	tests := []struct {
		name, give string
		want       []string
	}{
		{"typo", "server:\n  grpc_addresss: x\n", []string{`c.yaml:2: server: unknown field "grpc_addresss" (did you mean "grpc_address"?)`}},
		{"typo in list element", "rules:\n  - name: a\n    authenticator: [k]\n", []string{`c.yaml:3: rules[0]: unknown field "authenticator" (did you mean "authenticators"?)`}},
		{"case and dashes", "server:\n  Drain-Delay: 1s\n", []string{`c.yaml:2: server: unknown field "Drain-Delay" (did you mean "drain_delay"?)`}},
		{"top-level typo", "serer: {}\n", []string{`c.yaml:1: unknown field "serer" (did you mean "server"?)`}},
		{"no near miss lists fields", "server:\n  colour: red\n", []string{`c.yaml:2: server: unknown field "colour" (known fields: debug, drain_delay, grpc_address, keepalive, max_streams)`}},
		{"indented too little", "server:\ngrpc_address: x\n", []string{`c.yaml:2: unknown field "grpc_address" ("grpc_address" is a field of "server": indent it under "server")`}},
		{"indented too little in list", "rules:\n  - name: a\naction: allow\n", []string{`c.yaml:3: unknown field "action" ("action" is a field of "rules": indent it under "rules")`}},
		{"indented too far", "server:\n  grpc_address: x\n  rules: []\n", []string{`c.yaml:3: server: unknown field "rules" ("rules" is a field of the top level: it is indented too far)`}},
		{"indented too far, nested", "server:\n  keepalive:\n    time: 1s\n    debug: true\n", []string{`c.yaml:4: server.keepalive: unknown field "debug" ("debug" is a field of "server": it is indented too far)`}},
		{"indented too far, misspelt", "server:\n  keepalive:\n    debg: true\n", []string{`c.yaml:3: server.keepalive: unknown field "debg" ("debug" is a field of "server": it is indented too far)`}},
		{"abbreviation", "server:\n  drain: 1s\n", []string{`c.yaml:2: server: unknown field "drain" (did you mean "drain_delay"?)`}},
		{"int for duration", "server:\n  drain_delay: 5\n", []string{`c.yaml:2: server.drain_delay: want a duration like "250ms", got !!int 5`}},
		{"string for duration", "server: {keepalive: {time: often}}\n", []string{`c.yaml:1: server.keepalive.time: want a duration like "250ms", got !!str "often"`}},
		{"negative for unsigned", "server:\n  max_streams: -1\n", []string{`c.yaml:2: server.max_streams: want a non-negative integer (32 bits), got !!int -1`}},
		{"string for bool", "server:\n  debug: yes please\n", []string{`c.yaml:2: server.debug: want true or false, got !!str "yes please"`}},
		{"string for float", "rules:\n  - weight: heavy\n", []string{`c.yaml:2: rules[0].weight: want a number, got !!str "heavy"`}},
		{"map value", "limits:\n  a: 1\n  b: lots\n", []string{`c.yaml:3: limits.b: want a non-negative integer (32 bits), got !!str "lots"`}},
		{"list for struct", "server: [a]\n", []string{`c.yaml:1: server: want a mapping of fields, got a list`}},
		{"scalar for list", "rules: all\n", []string{`c.yaml:1: rules: want a list, got !!str "all"`}},
		{"mapping for string", "rules:\n  - name: {first: a}\n", []string{`c.yaml:2: rules[0].name: want a string, got a mapping`}},
		{"scalar for map", "limits: 3\n", []string{`c.yaml:1: limits: want a mapping, got !!int 3`}},
		{"duplicate", "server:\n  debug: true\n  debug: false\n", []string{`c.yaml:3: server: field "debug" is set twice (first on line 2)`}},
		{"inline and pointer", "realm: r\nextra: {realm: x, relm: y}\n", []string{`c.yaml:2: extra: unknown field "relm" (did you mean "realm"?)`}},
		{"all errors, in order", "server:\n  grpc_addresss: x\n  drain_delay: 5\nrules: [{nme: a}]\n", []string{
			`c.yaml:2: server: unknown field "grpc_addresss"`,
			`c.yaml:3: server.drain_delay: want a duration`,
			`c.yaml:4: rules[0]: unknown field "nme" (did you mean "name"?)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c config
			_, err := Decode("c.yaml", []byte(tt.give), &c, func(string) string { return "" })
			if err == nil {
				t.Fatalf("Decode accepted %q", tt.give)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d:\n  %s\nwant prefix:\n  %s", i, lines[i], w)
				}
				if strings.Contains(lines[i], "yamlfile.") || strings.Contains(lines[i], "time.Duration") {
					t.Errorf("error %d names a Go type: %s", i, lines[i])
				}
			}
		})
	}
}

func TestDecodeValidAliasesAndMerge(t *testing.T) {
	give := "common: &d {debug: true, drain_delay: 2s}\n"
	var got struct {
		Common server `yaml:"common"`
		Server server `yaml:"server"`
	}
	_, err := Decode("a.yaml", []byte(give+"server:\n  <<: *d\n  grpc_address: x\n"), &got, func(string) string { return "" })
	if err != nil || !got.Server.Debug || got.Server.DrainDelay != 2*time.Second || got.Server.GRPCAddress != "x" {
		t.Fatalf("Decode = %+v, %v", got, err)
	}
	_, err = Decode("a.yaml", []byte("common: &d {debg: true}\nserver: *d\n"), &got, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), `a.yaml:1: common: unknown field "debg" (did you mean "debug"?)`) {
		t.Fatalf("Decode = %v", err)
	}
}

func TestCheck(t *testing.T) {
	var c config
	if err := Check("c.yaml", []byte("server: {grpc_address: x}\nrules: [{name: a}]\n"), &c); err != nil {
		t.Fatalf("Check valid = %v", err)
	}
	if c.Server.GRPCAddress != "" {
		t.Fatal("Check decoded into dst")
	}
	err := Check("c.yaml", []byte("server: {grpc_addresss: x}\n"), &c)
	if err == nil || err.Error() != `c.yaml:1: server: unknown field "grpc_addresss" (did you mean "grpc_address"?)` {
		t.Fatalf("Check = %v", err)
	}
	if err := Check("c.yaml", []byte("server: [\n"), &c); err == nil || !strings.HasPrefix(err.Error(), "c.yaml:") {
		t.Fatalf("Check syntax = %v", err)
	}
}

// TestDecodeEmpty: an empty or comment-only file is a zero config, as the
// decoder has it, not a shape error.
func TestDecodeEmpty(t *testing.T) {
	for _, give := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		var c config
		if _, err := Decode("e.yaml", []byte(give), &c, func(string) string { return "" }); err != nil {
			t.Errorf("Decode(%q) = %v", give, err)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"kitten", "sitting", 3}, {"grpc_addresss", "grpc_address", 1}, {"abc", "abc", 0},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// FuzzDecode: any input gets an answer, never a panic, and every structural
// error carries the file name.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{sampleYAML, "server:\ngrpc_address: x\n", "a: &x [*x]\n", "rules: [{name: {a: b}}]\n", "<<: {server: {}}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c config
		_, err := Decode("f.yaml", data, &c, func(string) string { return "v" })
		if err != nil && !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Fatalf("error without the file name: %v", err)
		}
	})
}

func TestWrapJoined(t *testing.T) {
	err := Wrap("policy", errors.Join(Errorf("rules[0].name", "required"), errors.New("plain")))
	want := "policy.rules[0].name: required\npolicy: plain"
	if err == nil || err.Error() != want {
		t.Fatalf("Wrap = %q, want %q", err, want)
	}
	if Wrap("x", nil) != nil {
		t.Fatal("Wrap(nil) != nil")
	}
}
