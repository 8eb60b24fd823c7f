package telemetry

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func defaults() Config {
	var c Config
	c.ApplyDefaults()
	return c
}

func TestRedaction(t *testing.T) {
	c := defaults()
	c.Log.Redact = []string{"X-Extra"}
	var buf bytes.Buffer
	tel, err := New(c, &buf, Options{CredentialKeys: []string{"x-partner-key"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	tests := []struct{ give, secret string }{
		{"Authorization", "Bearer s1"},
		{"x-partner-key", "s2"},
		{"x-extra", "s3"},
		{"cookie", "s4"},
	}
	for _, tt := range tests {
		tel.Logger.Info("probe", tt.give, tt.secret, "kept", "visible-"+tt.give)
	}
	tel.Redact.Add([]string{"X-Later"})
	tel.Logger.Info("probe", "x-later", "s5")
	out := buf.String()
	for _, s := range []string{"Bearer s1", "s2", "s3", "s4", "s5"} {
		if strings.Contains(out, `"`+s+`"`) {
			t.Errorf("%q logged:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "visible-Authorization") || strings.Count(out, "[REDACTED]") != 5 {
		t.Errorf("want 5 redactions and the other attributes kept:\n%s", out)
	}
}

func TestErrorAttrs(t *testing.T) {
	err := errors.Join(errors.New("a"), errors.Join(errors.New("b"), errors.New("c")))
	got := ErrorAttrs(err)
	if got[3] != 3 || strings.Join(got[5].([]string), ",") != "a,b,c" {
		t.Errorf("ErrorAttrs = %v", got)
	}
	if got := ErrorAttrs(errors.New("one")); got[3] != 1 {
		t.Errorf("ErrorAttrs(one) = %v", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		give func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"format", func(c *Config) { c.Log.Format = "xml" }, "log.format"},
		{"denials", func(c *Config) { c.Log.Decisions.Denials = "some" }, "log.decisions.denials"},
		{"tracing endpoint", func(c *Config) { c.Tracing.Enabled = true }, "tracing.endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults()
			tt.give(&c)
			err := c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestTracingOffByDefault(t *testing.T) {
	tel, err := New(defaults(), &bytes.Buffer{}, Options{Version: "v9"})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Tracing() {
		t.Error("Tracing() with tracing disabled")
	}
	if Version("v9") != "v9" || Version("") == "" {
		t.Errorf("Version: %q %q", Version("v9"), Version(""))
	}
}
