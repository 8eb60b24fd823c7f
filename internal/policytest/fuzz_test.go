package policytest

import (
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// FuzzTestFile: any bytes as a test file are decoded and validated without
// a panic; every request that validates (without a credential, which
// needs a config) becomes an authz.Request, and every descriptor that
// validates has a canonical form that parses to itself.
func FuzzTestFile(f *testing.F) {
	f.Add([]byte("config: c.yaml\ntests:\n  - {name: a, request: {url: \"https://a.test/x?y=1\", headers: {x-a: b}}, expect: {status: 200, rate_limits: {domain: d, descriptors: [\"a=b, c=d\"]}}}\n"))
	f.Add([]byte("tests: [{name: x, request: {method: \"GET \", url: \"http://[::1]:80/%2F\", client_address: \"::1\"}, expect: {code: ok}}]\n"))
	f.Add([]byte("tests:\n  - name: x\n    request: {url: \"https:///\"}\n    expect: {rate_limits: {descriptors: [\"=\", \"a=\"]}}\n"))
	f.Add([]byte("signing_keys: {jwt: [{issuer: i}], udb_ticket: [{}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var file File
		if _, err := yamlfile.Decode("t.yaml", data, &file, func(string) string { return "" }); err != nil {
			return
		}
		_ = file.validate()
		for i := range file.Tests {
			c := &file.Tests[i]
			if c.validate() != nil {
				continue
			}
			if c.Request.Credential == nil {
				r, err := (&minter{}).request(&c.Request)
				if err != nil || r.Method == "" {
					t.Fatalf("valid request %+v: %+v, %v", c.Request, r, err)
				}
			}
			if l := c.Expect.RateLimits; l != nil {
				for _, d := range l.Descriptors {
					canon, err := parseDescriptor(d)
					if err != nil {
						t.Fatalf("validated descriptor %q: %v", d, err)
					}
					if again, err := parseDescriptor(canon); err != nil || again != canon || strings.Count(canon, "=") < 1 {
						t.Fatalf("descriptor %q: canonical %q reparses as %q, %v", d, canon, again, err)
					}
				}
			}
		}
	})
}
