package tokens

import (
	"errors"
	"slices"
	"strings"
	"testing"

	josejson "github.com/go-jose/go-jose/v4/json"
)

// FuzzJWKS: parseJWKS never panics, never returns a CredentialError (a bad
// key set is could-not-decide, not a bad token), and every key it accepts
// is one go-jose's case-sensitive, duplicate-refusing JSON reads the same
// way: same kid, use "sig" or none, key_ops absent or holding "verify".
func FuzzJWKS(f *testing.F) {
	const rsaN = `"n":"` + "t3iFiqF6v7lzikUReehMI1N-lk6C9P6wbsSUPmNl8h3vdOA8NEEHjj63ltbGHXWWOTfR8mm4MXfRlZaWYhQn1R6erKpYjmAHKFEok8Axz88KIscTEOZFjShqd_kObXuyA-DrdYPJuOQb2vyoU5kHx7ZU8A19TpTZqdWhwMBcWoLaoWuJKjJ82QkbZggIN9jLvjj6S9MV9v56ALI3FoW771vYDMsiBBQpYoQ51qmPKUs3En4f0WnfNAzynWbyW9aJc0Sswlm7xm-SydVUFi7jtCzFAdAukdtQWuBOxkNTOgXl8bEoMOfj-v_qJSNHUrXIsQbxtLWHcgK-aufBVca8zQ" + `","e":"AQAB"`
	for _, s := range []string{
		`{"keys":[{"kty":"RSA","kid":"a",` + rsaN + `}]}`,
		`{"keys":[{"kty":"RSA","kid":"a","KID":"b",` + rsaN + `}]}`,
		`{"keys":[{"kty":"RSA","kid":"a","use":"enc","USE":"sig",` + rsaN + `}]}`,
		`{"keys":[{"kty":"RSA","kid":"a","key_ops":["encrypt"],` + rsaN + `}]}`,
		`{"keys":[{"kty":"RSA","kid":"a","kid":"b",` + rsaN + `}]}`,
		`{"keys":[{"kty":"oct","kid":"h","k":"a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tr"}],"Keys":[]}`,
		`{"keys":null}`, `{"keys":[null,1,"x",{}]}`, `[]`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return // bounded work per input
		}
		snap, _, err := parseJWKS(data)
		var ce *CredentialError
		if errors.As(err, &ce) {
			t.Fatalf("parseJWKS(%q) = %v, a CredentialError", data, err)
		}
		if err != nil {
			return
		}
		var doc struct {
			Keys []struct {
				Kid    string   `json:"kid"`
				Use    string   `json:"use"`
				KeyOps []string `json:"key_ops"`
			} `json:"keys"`
		}
		if jerr := josejson.Unmarshal(data, &doc); jerr != nil && strings.Contains(jerr.Error(), "duplicate key") {
			t.Fatalf("accepted %q, in which go-jose finds a duplicate: %v", data, jerr)
		}
		for _, k := range snap.all {
			if !slices.ContainsFunc(doc.Keys, func(o struct {
				Kid    string   `json:"kid"`
				Use    string   `json:"use"`
				KeyOps []string `json:"key_ops"`
			}) bool {
				return o.Kid == k.kid && (o.Use == "" || o.Use == "sig") && (o.KeyOps == nil || slices.Contains(o.KeyOps, "verify"))
			}) {
				t.Fatalf("accepted key %q of %q, which go-jose reads as no signature key with that kid", k.kid, data)
			}
		}
	})
}
