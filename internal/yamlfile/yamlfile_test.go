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
		{"name: x\ncolour: red\n", "s.yaml: line 2: field colour not found"},
		{"wait: soon\n", "s.yaml: line 1: cannot unmarshal"},
		{"name: [unclosed\n", "s.yaml: "},
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
