package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// FuzzDecodeExplainRequest: any body gets a request or an error, never a
// panic; a request decoded is one Envoy could send (a method token, a
// host, a path) and converts to an authz.Request; an error never quotes
// the URL or a header value (they may hold credentials).
func FuzzDecodeExplainRequest(f *testing.F) {
	for _, s := range []string{
		`{"url":"https://shop.example.com/api/x?q=1","headers":{"x-api-key":"k"}}`,
		`{"method":"POST","host":"a.example","path":"/p","query":"a=b","headers":[["cookie","s=1"],["cookie","t=2"]],"peer":"10.0.0.1"}`,
		`{"host":"a.example","context_extensions":{"tier":"gold"},"source_principal":"spiffe://x/y"}`,
		`{"url":"/relative?token=secretsecretsecret"}`,
		`{"host":"a.example","headers":[["x","secretsecretsecret\n"]]}`,
		`{"headers":[["a"]]}`, `{"bogus":1}`, `{} {}`, `[]`, `null`, ``, `{"url":1}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		hr, err := DecodeExplainRequest(strings.NewReader(body))
		if err != nil {
			var raw struct {
				URL     string          `json:"url"`
				Headers json.RawMessage `json:"headers"`
			}
			_ = json.Unmarshal([]byte(body), &raw)
			var secrets []string
			if raw.URL != "" {
				secrets = append(secrets, raw.URL)
			}
			var m map[string]string
			if json.Unmarshal(raw.Headers, &m) == nil {
				for _, v := range m {
					secrets = append(secrets, v)
				}
			}
			var l [][]string
			if json.Unmarshal(raw.Headers, &l) == nil {
				for _, kv := range l {
					if len(kv) == 2 {
						secrets = append(secrets, kv[1])
					}
				}
			}
			for _, s := range secrets {
				if len(s) >= 12 && strings.Contains(err.Error(), s) {
					t.Fatalf("error %q quotes %q", err, s)
				}
			}
			return
		}
		if !validToken(hr.Method) || hr.Host == "" || hr.Path == "" {
			t.Fatalf("decoded an impossible request: %+v", hr)
		}
		r := extauthz.RequestFromProto(extauthz.BuildCheckRequest(hr))
		if r.Method != hr.Method {
			t.Fatalf("method %q became %q", hr.Method, r.Method)
		}
	})
}
