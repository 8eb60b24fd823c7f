package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// TestAuthKindsMatchConfig: every kind section of authenticatorConfig has
// an entry in authKinds under its yaml name and back, so adding a kind is
// one field and one entry, and neither can be forgotten.
func TestAuthKindsMatchConfig(t *testing.T) {
	common := map[string]bool{"name": true, "source": true, "challenge_scheme": true, "strip_credential": true}
	ty := reflect.TypeFor[authenticatorConfig]()
	fields := map[string]reflect.StructField{}
	for i := range ty.NumField() {
		f := ty.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !common[name] {
			fields[name] = f
		}
	}
	kinds := map[string]*authKind{}
	for i := range authKinds {
		kinds[authKinds[i].name] = &authKinds[i]
	}
	for name, f := range fields {
		k := kinds[name]
		if k == nil {
			t.Errorf("authenticatorConfig.%s (yaml %q) has no entry in authKinds", f.Name, name)
			continue
		}
		// Setting only this field selects this kind.
		var ac authenticatorConfig
		reflect.ValueOf(&ac).Elem().FieldByIndex(f.Index).Set(reflect.New(f.Type.Elem()))
		if got, sec := ac.kind(); got != k || sec == nil {
			t.Errorf("a config with only %s set is kind %v", name, got)
		}
	}
	for name := range kinds {
		if _, ok := fields[name]; !ok {
			t.Errorf("authKinds has %q, which no authenticatorConfig field decodes", name)
		}
	}
}

// TestAuthenticatorValidateKinds: none and two kinds are one error each,
// at the entry, listing the kinds; a kind's own error carries its path.
func TestAuthenticatorValidateKinds(t *testing.T) {
	for _, tc := range []struct {
		name, give, want string
	}{
		{"none", `{name: a, source: {header: x}}`, "set exactly one verifier kind (api_key, jwt, udb_ticket, udb_session); found 0"},
		{"two", `{name: a, source: {header: x}, api_key: {file: k}, udb_session: {}}`, "found 2"},
		{"kind's own", `{name: a, source: {header: x}, udb_session: {key_encoding: rot13}}`, "udb_session.key_encoding: must be sha256 or plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ac authenticatorConfig
			if _, err := yamlfile.Decode("a.yaml", []byte(tc.give), &ac, func(string) string { return "" }); err != nil {
				t.Fatal(err)
			}
			err := ac.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate = %v, want %q", err, tc.want)
			}
		})
	}
}
