package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// clientCert is a client certificate for uri signed by a throwaway CA, URL
// encoded as Envoy sends it with include_peer_certificate.
func clientCert(t *testing.T, uri string) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(p)
}

// TestPeerAndIntrospectionEndToEnd runs the service with an mtls and an
// introspection authenticator and checks requests over gRPC with the
// generated client, as a gateway sends them: the source principal and
// certificate decide the mtls rule; an RFC 7662 endpoint the introspection
// rule, with 503 (never 401) while it is down.
func TestPeerAndIntrospectionEndToEnd(t *testing.T) {
	var down atomic.Bool
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		user, pass, _ := r.BasicAuth()
		if user != "gw" || pass != "s3cret" || r.ParseForm() != nil {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		out := map[string]any{"active": false}
		if r.PostForm.Get("token") == "opaque-token-alice" {
			out = map[string]any{"active": true, "sub": "alice", "scope": "read", "client_id": "web", "exp": time.Now().Add(time.Hour).Unix()}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}))
	defer as.Close()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	servicetest.WriteFile(t, secret, "s3cret")
	cfg := servicetest.BaseConfig(servicetest.KeysFile(t, dir), `    - name: services
      match: {path: {prefix: /svc/}}
      action: authenticate
      authenticators: [peers]
    - name: opaque
      match: {path: {prefix: /opaque/}}
      action: authenticate
      authenticators: [oauth]
`)
	cfg = strings.Replace(cfg, "authenticators:\n", `authenticators:
  - name: peers
    source: {peer: true}
    mtls:
      allow: [{trust_domain: example.org, path_prefix: /ns/payments}]
  - name: oauth
    source: {authorization: Bearer}
    introspection:
      endpoint: `+as.URL+`/introspect
      allow_http: true
      client_id: gw
      client_secret_file: `+secret+`
`, 1)
	h := start(t, cfg)
	check := func(path, principal, cert string, headers ...[2]string) *authv3.CheckResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := h.client.Check(ctx, extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "api.example.com", Path: path,
			Headers: headers, SourcePrincipal: principal, SourceCertificate: cert}))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	payments := "spiffe://example.org/ns/payments/sa/api"

	resp := check("/svc/pay", payments, clientCert(t, payments))
	if resp.GetStatus().GetCode() != 0 || upstreamHeaders(resp)["x-auth-subject"] != payments || upstreamHeaders(resp)["x-auth-method"] != "mtls" {
		t.Fatalf("mesh peer: %v", resp)
	}
	for name, give := range map[string][2]string{
		"foreign trust domain":   {"spiffe://evil.example/ns/payments/sa/api", ""},
		"principal forged":       {payments, clientCert(t, "spiffe://example.org/ns/other/sa/x")},
		"no peer (plain TLS)":    {"", ""},
		"path outside the rules": {"spiffe://example.org/ns/billing/sa/x", ""},
	} {
		if c := check("/svc/pay", give[0], give[1]).GetStatus().GetCode(); c != int32(codes.Unauthenticated) {
			t.Errorf("%s: code %d, want Unauthenticated", name, c)
		}
	}
	// A header claiming a peer identity is no peer.
	if c := check("/svc/pay", "", "", [2]string{"x-forwarded-client-cert", "URI=" + payments}).GetStatus().GetCode(); c != int32(codes.Unauthenticated) {
		t.Errorf("XFCC header from the client: code %d", c)
	}

	resp = check("/opaque/x", "", "", [2]string{"authorization", "Bearer opaque-token-alice"})
	if resp.GetStatus().GetCode() != 0 || upstreamHeaders(resp)["x-auth-subject"] != "alice" {
		t.Fatalf("introspected token: %v", resp)
	}
	if c := check("/opaque/x", "", "", [2]string{"authorization", "Bearer opaque-token-mallory"}).GetStatus().GetCode(); c != int32(codes.Unauthenticated) {
		t.Errorf("inactive token: code %d", c)
	}
	down.Store(true)
	if c := check("/opaque/x", "", "", [2]string{"authorization", "Bearer opaque-token-bob"}).GetStatus().GetCode(); c != int32(codes.Unavailable) {
		t.Errorf("endpoint down: code %d, want Unavailable", c)
	}
	if c := check("/opaque/x", "", "", [2]string{"authorization", "Bearer opaque-token-alice"}).GetStatus().GetCode(); c != 0 {
		t.Errorf("cached token while the endpoint is down: code %d", c)
	}
	if strings.Contains(h.logs.String(), "opaque-token-") || strings.Contains(h.logs.String(), "s3cret") {
		t.Errorf("a token or secret in the logs:\n%s", h.logs.String())
	}
}
