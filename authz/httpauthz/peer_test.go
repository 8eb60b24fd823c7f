package httpauthz_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/ext-authz/ext-authz/authz/httpauthz"
)

// TestNoPeerOverHTTP: Envoy's HTTP protocol carries no TLS peer, so the
// request has none, whatever headers claim one (an x-forwarded-client-cert
// the client sent) and whoever the connection to the service is (the
// gateway's own certificate is not the client's).
func TestNoPeerOverHTTP(t *testing.T) {
	r := httptest.NewRequest("GET", "/check/svc/x", nil)
	r.Header.Set("X-Forwarded-Client-Cert", `By=spiffe://example.org/gw;URI=spiffe://example.org/ns/payments/sa/api`)
	r.Header.Set("X-Ssl-Client-Cert", "-----BEGIN%20CERTIFICATE-----")
	r.Header.Set("X-Forwarded-Principal", "spiffe://example.org/ns/payments/sa/api")
	gw, _ := url.Parse("spiffe://cluster.local/ns/istio-ingress/sa/gateway")
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{gw}}}}
	got, ok := httpauthz.RequestFromHTTP(r, "/check")
	if !ok {
		t.Fatal("refused")
	}
	if got.SourcePrincipal != "" || got.SourceCertificate != "" {
		t.Fatalf("a peer over HTTP: principal %q certificate %q", got.SourcePrincipal, got.SourceCertificate)
	}
}
