package tokens

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzDiscoveryDocument feeds arbitrary bytes to the configuration
// document parser and the trust rules. Promises: no panic; no error is a
// CredentialError (a bad document must never read as a bad token); an
// accepted document names exactly the configured issuer, a jwks_uri that is
// https, without user info, on the issuer's host or the allowed one, and
// algorithms only from the configured list; and an independent decoder
// (into a generic map, as a cache or proxy in front of us might) reads the
// same issuer and jwks_uri.
func FuzzDiscoveryDocument(f *testing.F) {
	const iss = "https://idp.example/realms/main"
	home, _ := url.Parse(iss)
	d := &discovery{
		issuer: iss,
		algs:   []string{"RS256", "ES256", "EdDSA"},
		policy: newHostPolicy(&IssuerConfig{AllowedHosts: []string{"keys.example"}}, "issuer's", home),
	}
	for _, s := range []string{
		`{"issuer":"https://idp.example/realms/main","jwks_uri":"https://idp.example/realms/main/certs","id_token_signing_alg_values_supported":["RS256","none"]}`,
		`{"issuer":"https:\/\/idp.example\/realms\/main","jwks_uri":"https://keys.example:8443/k"}`,
		`{"issuer":"https://idp.example/realms/main","jwks_uri":"https://IDP.example:443/k","id_token_signing_alg_values_supported":[]}`,
		`{"issuer":"https://idp.example/realms/main/","jwks_uri":"https://idp.example/k"}`,
		`{"issuer":"https://evil.example","issuer":"https://idp.example/realms/main","jwks_uri":"https://idp.example/k"}`,
		`{"issuer":"https://idp.example/realms/main","jwks_uri":"https://idp.example@evil.example/k"}`,
		`{"issuer":"https://idp.example/realms/main","jwks_uri":"https://evil.example\\@idp.example/k"}`,
		`{"issuer":"https://idp.example/realms/main","jwks_uri":"//evil.example/k"}`,
		`{"issuer":"https://idp.example/realms/main","jwks_uri":"http://idp.example/k"}`,
		`{"issuer":"https://idp.example/realms/main","jwks_uri":"https://idp.example:8443/k"}`,
		`{"issuer":"https://idp.example/realms/main","jwks_uri":"https://idp.example/k","x":{"jwks_uri":1,"jwks_uri":2}}`,
		`{"issuer":"https://idp.example/realms/main\u0000","jwks_uri":"https://idp.example/k"}`,
		`{"issuer":"https://idp.example/realms/main","jwks_uri":"https://idp.example/k","id_token_signing_alg_values_supported":"RS256"}`,
		`{"issuer":null,"jwks_uri":"https://idp.example/k"}`,
		`[]`, `{}`, `{"issuer":"\ud800"}`, "\xff", ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := parseDiscovery(data)
		var ce *CredentialError
		if err != nil {
			if errors.As(err, &ce) {
				t.Fatalf("parse error is a CredentialError: %v", err)
			}
			return
		}
		if doc.Issuer == "" || doc.JWKSURI == "" {
			t.Fatalf("parsed a document without issuer or jwks_uri: %+v", doc)
		}
		var generic map[string]any
		if err := json.Unmarshal(data, &generic); err != nil {
			t.Fatalf("parser accepted what encoding/json refuses: %v", err)
		}
		if generic["issuer"] != doc.Issuer || generic["jwks_uri"] != doc.JWKSURI {
			t.Fatalf("decoders disagree: %q %q vs %v %v", doc.Issuer, doc.JWKSURI, generic["issuer"], generic["jwks_uri"])
		}
		got, err := d.accept(doc)
		if err != nil {
			if errors.As(err, &ce) {
				t.Fatalf("accept error is a CredentialError: %v", err)
			}
			return
		}
		if doc.Issuer != iss {
			t.Fatalf("accepted issuer %q", doc.Issuer)
		}
		u, err := url.Parse(got.jwksURI)
		if err != nil || u.Scheme != "https" || u.User != nil {
			t.Fatalf("accepted jwks_uri %q", got.jwksURI)
		}
		host := strings.ToLower(u.Hostname())
		if !(host == "idp.example" && (u.Port() == "" || u.Port() == "443")) && host != "keys.example" {
			t.Fatalf("accepted jwks_uri %q on host %q", got.jwksURI, u.Host)
		}
		// What the fetch would dial is the same host.
		req, err := http.NewRequest(http.MethodGet, got.jwksURI, nil)
		if err != nil || !strings.EqualFold(req.URL.Hostname(), host) {
			t.Fatalf("net/http reads jwks_uri %q as host %v (%v)", got.jwksURI, req, err)
		}
		for _, a := range got.algs {
			if !slices.Contains(d.algs, a) {
				t.Fatalf("accepted algorithm %q", a)
			}
		}
		if got.algs != nil && len(got.algs) == 0 {
			t.Fatal("accepted an empty algorithm list")
		}
	})
}

// FuzzCacheControl: no panic, and the freshness is within [0, maxFreshness].
func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60", "no-store", `max-age="5", max-age=5`, "max-age=99999999999999999999", "max-age=-1", ",,=,", "MAX-AGE = 7"} {
		f.Add(s, "10")
	}
	f.Fuzz(func(t *testing.T, cc, age string) {
		got := freshnessOf(http.Header{"Cache-Control": {cc}, "Age": {age}})
		if got.age < 0 || got.age > maxFreshness || (!got.set && got.age != 0) {
			t.Fatalf("freshnessOf(%q, age %q) = %+v", cc, age, got)
		}
	})
}
