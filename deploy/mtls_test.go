package deploy

import (
	"testing"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	networkingv1alpha3api "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// TestMTLSOverlay: the optional mutual-TLS install requires client
// certificates on the HTTPS server (and only there: port 80 redirects), and
// its EnvoyFilter variant sends the certificate to ext-authz; every other
// install keeps the gateway's TLS one-way and the certificate unsent (an
// ext_authz call should not carry what the policy does not use).
func TestMTLSOverlay(t *testing.T) {
	c := mustCorpus(t)
	wantMutual := map[string]bool{"custom-mtls": true, "envoyfilter-mtls": true}
	wantCert := map[string]bool{"envoyfilter-mtls": true}
	eachMeshSet(t, c, func(t *testing.T, set string, mesh []*object) {
		var https int
		for _, g := range find[*networkingv1.Gateway](mesh, "") {
			for _, s := range g.Spec.GetServers() {
				if s.GetPort().GetProtocol() != "HTTPS" {
					if s.GetTls().GetMode() == networkingv1alpha3api.ServerTLSSettings_MUTUAL {
						t.Errorf("Gateway %s server %s: MUTUAL on a plain port", g.Name, s.GetPort().GetName())
					}
					continue
				}
				https++
				mutual := s.GetTls().GetMode() == networkingv1alpha3api.ServerTLSSettings_MUTUAL
				if mutual != wantMutual[set] {
					t.Errorf("Gateway %s server %s: tls mode %s (mutual TLS wanted: %v)", g.Name, s.GetPort().GetName(), s.GetTls().GetMode(), wantMutual[set])
				}
				if mutual && s.GetTls().GetMinProtocolVersion() == networkingv1alpha3api.ServerTLSSettings_TLS_AUTO {
					t.Errorf("Gateway %s server %s: set minProtocolVersion", g.Name, s.GetPort().GetName())
				}
			}
		}
		if wantMutual[set] && https == 0 {
			t.Fatal("no HTTPS Gateway server")
		}
		var filters int
		for name, ef := range envoyFilters(t, mesh) {
			for _, p := range ef.Patches {
				if p.ApplyTo != networkingv1alpha3api.EnvoyFilter_HTTP_FILTER || p.Value == nil {
					continue
				}
				if _, cfg := httpFilter(t, p); cfg != nil {
					if ea, ok := cfg.(*extauthzv3.ExtAuthz); ok {
						filters++
						if ea.GetIncludePeerCertificate() != wantCert[set] {
							t.Errorf("EnvoyFilter %s: include_peer_certificate %v, want %v", name, ea.GetIncludePeerCertificate(), wantCert[set])
						}
					}
				}
			}
		}
		if wantCert[set] && filters != 1 {
			t.Errorf("%d ext_authz filters, want the one that sends the certificate", filters)
		}
	})
}
