package authz_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/tokens"
)

// TestPeerSource: the peer source reads only the request's TLS peer, never
// a header, and strips nothing.
func TestPeerSource(t *testing.T) {
	src := authz.CredentialSource{Peer: true}
	if err := src.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (&authz.CredentialSource{Peer: true, Header: "x-peer"}).Validate(); err == nil || !strings.Contains(err.Error(), "peer") {
		t.Fatalf("peer and header: %v", err)
	}
	if src.String() != "peer" {
		t.Errorf("String = %q", src.String())
	}
	tests := []struct {
		name string
		give authz.Request
		want string
		ok   bool
	}{
		{"principal", authz.Request{SourcePrincipal: "spiffe://td/a"}, tokens.PeerCredential("spiffe://td/a", ""), true},
		{"principal and certificate", authz.Request{SourcePrincipal: "spiffe://td/a", SourceCertificate: "c"}, tokens.PeerCredential("spiffe://td/a", "c"), true},
		{"no peer", authz.Request{}, "", false},
		{"headers are not a peer", authz.Request{Headers: map[string]string{"x-forwarded-client-cert": "URI=spiffe://td/a", "x-peer": "spiffe://td/a"}}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := src.Extract(&tt.give)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Extract = %q %v, want %q %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestPeerAuthenticatorDecides: a rule with a peer authenticator allows
// the verified peer, strips nothing even with strip_credential, and
// answers 401 without a peer.
func TestPeerAuthenticatorDecides(t *testing.T) {
	v := authz.VerifierFunc(func(_ context.Context, cred string) (tokens.Principal, error) {
		if cred == tokens.PeerCredential("spiffe://td/ns/a", "") {
			return tokens.Principal{Subject: "spiffe://td/ns/a", Method: tokens.MethodMTLS}, nil
		}
		return tokens.Principal{}, tokens.ErrForeignTrustDomain
	})
	p, err := authz.NewPipeline(authz.Config{Rules: []authz.RuleConfig{{Name: "svc", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/"}},
		Action: authz.ActionAuthenticate, Authenticators: []string{"peers"}}}},
		[]*authz.Authenticator{{Name: "peers", Source: authz.CredentialSource{Peer: true}, Verifier: v, StripCredential: true}}, authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	req := func(principal string) *authz.Request {
		return &authz.Request{Method: "GET", Host: "h", Path: "/x", Headers: map[string]string{"accept": "*/*"}, SourcePrincipal: principal}
	}
	d := p.Decide(context.Background(), req("spiffe://td/ns/a"))
	if d.Code != authz.OK || d.Identity.Subject != "spiffe://td/ns/a" {
		t.Fatalf("peer: %+v", d)
	}
	for _, h := range d.RemoveHeaders {
		if h == "" {
			t.Errorf("an empty header name removed: %q", d.RemoveHeaders)
		}
	}
	if d := p.Decide(context.Background(), req("")); d.Code != authz.Unauthenticated || d.Reason != "missing_credential" {
		t.Fatalf("no peer: %+v", d)
	}
	d = p.Decide(context.Background(), req("spiffe://evil/ns/a"))
	if d.Code != authz.Unauthenticated || !errors.Is(tokens.ErrForeignTrustDomain, tokens.ErrInvalid) || d.Reason != "foreign_trust_domain" {
		t.Fatalf("foreign: %+v", d)
	}
}
