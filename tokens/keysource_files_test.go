package tokens

import (
	"slices"
	"testing"
)

// TestJWTConfigFiles: every local file a key source reads is listed for
// the service to watch, and remote sources list none.
func TestJWTConfigFiles(t *testing.T) {
	c := JWTConfig{Issuers: []IssuerConfig{
		{Issuer: "https://a.example", JWKSFile: "/keys/a.json"},
		{Issuer: "https://b.example", JWKSURL: "https://b.example/keys"},
		{Issuer: "https://c.example", Discovery: true, JWKSFile: "/keys/c.json"},
	}}
	if got, want := c.Files(), []string{"/keys/a.json", "/keys/c.json"}; !slices.Equal(got, want) {
		t.Errorf("Files() = %v, want %v", got, want)
	}
	for _, k := range keySourceKinds {
		if k.remote && k.files != nil {
			t.Errorf("%s: a remote source lists files", k.field)
		}
	}
}
