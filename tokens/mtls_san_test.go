package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"
)

// rawURILeaf issues a client certificate whose one URI SAN is uri byte
// for byte (x509.CreateCertificate would write Go's rendering of a
// parsed URL instead).
func rawURILeaf(t *testing.T, uri string) string {
	t.Helper()
	a := getCA(t)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "client"},
		NotBefore: t0.Add(-time.Minute), NotAfter: t0.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &k.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.URIs) != 1 {
		t.Fatalf("URIs %v", c.URIs)
	}
	return envoyEncode(c)
}

// TestMTLSCertificateIdentityIsItsSAN: the identity taken from a
// certificate is its SAN exactly as the CA wrote it and as its kind
// says: a DNS SAN that spells a SPIFFE ID is not a SPIFFE ID (a CA trusted
// for DNS names would otherwise mint mesh identities), and a URI SAN that
// is not the ID it was rewritten to.
func TestMTLSCertificateIdentityIsItsSAN(t *testing.T) {
	a := getCA(t)
	nb, na := t0.Add(-time.Minute), t0.Add(time.Hour)
	payments := "spiffe://example.org/ns/payments/sa/api"
	dnsCert := func(names ...string) string { return envoyEncode(a.leaf(t, nil, names, nb, na)) }
	tests := []struct {
		name, principal, cert string
	}{
		{"DNS SAN spelling a SPIFFE ID, as Envoy reports it", payments, dnsCert(payments)},
		{"DNS SAN spelling a SPIFFE ID, second of two", payments, dnsCert("client.example.com", payments)},
		{"DNS SAN spelling a SPIFFE ID, no principal", "", dnsCert(payments)},
		{"upper-case scheme, no principal", "", rawURILeaf(t, "SPIFFE://example.org/ns/payments/sa/api")},
		{"upper-case scheme, Envoy's principal", "SPIFFE://example.org/ns/payments/sa/api", rawURILeaf(t, "SPIFFE://example.org/ns/payments/sa/api")},
		{"empty fragment, no principal", "", rawURILeaf(t, "spiffe://example.org/ns/payments/sa/api#")},
		{"empty fragment, Envoy's principal", "spiffe://example.org/ns/payments/sa/api#", rawURILeaf(t, "spiffe://example.org/ns/payments/sa/api#")},
		{"upper-case scheme, principal as Go renders it", payments, rawURILeaf(t, "SPIFFE://example.org/ns/payments/sa/api")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := mtlsFixture(t, meshRules)
			p, err := v.Verify(context.Background(), PeerCredential(tt.principal, tt.cert))
			if err == nil {
				t.Fatalf("accepted as %q", p.Subject)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a rejection", err)
			}
		})
	}
}

// TestMTLSRawURISANAccepted: a well-formed SVID's URI SAN read raw is the
// ID itself.
func TestMTLSRawURISANAccepted(t *testing.T) {
	payments := "spiffe://example.org/ns/payments/sa/api"
	for _, principal := range []string{"", payments} {
		v, _ := mtlsFixture(t, meshRules)
		p, err := v.Verify(context.Background(), PeerCredential(principal, rawURILeaf(t, payments)))
		if err != nil || p.Subject != payments {
			t.Fatalf("principal %q: %v, %q; want %s", principal, err, p.Subject, payments)
		}
	}
}
