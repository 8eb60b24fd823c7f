package extauthz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/benchcpu"
	"github.com/ext-authz/ext-authz/tokens"
)

// BenchmarkCheckCachedByKind is a cached Check (the lean gRPC handler:
// decode, decide, encode) per authenticator kind, with the real verifiers:
// an API key (the baseline), an introspected opaque token (its endpoint a
// real local server, answered once before the loop), and an mTLS peer
// identified by its principal alone and with its certificate. Compare the
// kinds as ratios to auth=api_key of the same run (cpu-ns/op: steadier
// than ns/op on a shared machine).
func BenchmarkCheckCachedByKind(b *testing.B) {
	dir := b.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	writeBench(b, keys, "keys:\n  - subject: alice\n    sha256: "+tokens.HashAPIKey("bench-api-key-alice")+"\n    scopes: [read]\n")
	secret := filepath.Join(dir, "secret")
	writeBench(b, secret, "s3cret")
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "sub": "alice", "scope": "read", "client_id": "web",
			"exp": time.Now().Add(time.Hour).Unix()})
	}))
	b.Cleanup(as.Close)

	apiKey, err := tokens.NewAPIKeyVerifier(tokens.APIKeyConfig{File: keys})
	if err != nil {
		b.Fatal(err)
	}
	intro, err := tokens.NewIntrospectionVerifier(tokens.IntrospectionConfig{Endpoint: as.URL + "/introspect", AllowHTTP: true,
		ClientID: "gw", ClientSecretFile: secret}, tokens.IntrospectionOptions{})
	if err != nil {
		b.Fatal(err)
	}
	peers, err := tokens.NewMTLSVerifier(tokens.MTLSConfig{Allow: []tokens.MTLSRule{{TrustDomain: "example.org", PathPrefix: "/ns/payments"}}}, tokens.Options{})
	if err != nil {
		b.Fatal(err)
	}
	auths := []*authz.Authenticator{
		{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, Verifier: apiKey},
		{Name: "oauth", Source: authz.CredentialSource{Authorization: "Bearer"}, Verifier: intro},
		{Name: "peers", Source: authz.CredentialSource{Peer: true}, Verifier: peers},
	}
	rule := func(name, prefix, auth string) authz.RuleConfig {
		return authz.RuleConfig{Name: name, Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: prefix}},
			Action: authz.ActionAuthenticate, Authenticators: []string{auth}}
	}
	p, err := authz.NewPipeline(authz.Config{Realm: "bench", Rules: []authz.RuleConfig{
		rule("keys", "/keys/", "keys"), rule("oauth", "/oauth/", "oauth"), rule("peers", "/peers/", "peers"),
	}}, auths, authz.Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := extauthz.New(p, extauthz.Options{})
	id := "spiffe://example.org/ns/payments/sa/api"
	common := [][2]string{{"user-agent", "bench"}, {"accept", "*/*"}}
	for _, c := range []struct {
		name string
		give extauthz.HTTPRequest
	}{
		{"auth=api_key", extauthz.HTTPRequest{Path: "/keys/x", Headers: append([][2]string{{"x-api-key", "bench-api-key-alice"}}, common...)}},
		{"auth=introspection", extauthz.HTTPRequest{Path: "/oauth/x", Headers: append([][2]string{{"authorization", "Bearer opaque-bench-token-1"}}, common...)}},
		{"auth=mtls/peer=principal", extauthz.HTTPRequest{Path: "/peers/x", Headers: common, SourcePrincipal: id}},
		{"auth=mtls/peer=principal+certificate", extauthz.HTTPRequest{Path: "/peers/x", Headers: common, SourcePrincipal: id, SourceCertificate: benchCert(b, id)}},
	} {
		c.give.Method, c.give.Host, c.give.RequestID = "GET", "api.example.com", "r"
		req := extauthz.BuildCheckRequest(c.give)
		// Allowed (and now cached) on the proto path first.
		if resp, _ := srv.Check(context.Background(), req); resp.GetStatus().GetCode() != 0 {
			b.Fatalf("%s: denied: %v", c.name, resp)
		}
		raw, err := proto.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		data := mem.BufferSlice{mem.SliceBuffer(raw)}
		dec := func(v any) error { return (extauthz.Codec{}).Unmarshal(data, v) }
		handler := extauthz.LeanServiceDesc.Methods[0].Handler
		check := func() {
			resp, err := handler(srv, context.Background(), dec, nil)
			if err != nil {
				b.Fatal(err)
			}
			out, err := (extauthz.Codec{}).Marshal(resp)
			if err != nil {
				b.Fatal(err)
			}
			if out.Len() < 100 {
				b.Fatalf("answer of %d bytes", out.Len())
			}
			out.Free()
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			benchcpu.Report(b)
			for b.Loop() {
				check()
			}
		})
	}
}

func writeBench(b *testing.B, path, body string) {
	b.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		b.Fatal(err)
	}
}

// benchCert is a client certificate for uri, URL-encoded as Envoy sends it.
func benchCert(b *testing.B, uri string) string {
	b.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), URIs: []*url.URL{u}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		b.Fatal(err)
	}
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(p)
}
