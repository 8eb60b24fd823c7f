package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// testCA issues client certificates, as the mesh's CA (istiod, SPIRE)
// does.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

var (
	caOnce sync.Once
	ca     testCA
)

func getCA(t testing.TB) *testCA {
	t.Helper()
	caOnce.Do(func() {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
			NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			panic(err)
		}
		c, _ := x509.ParseCertificate(der)
		ca = testCA{key: k, cert: c}
	})
	return &ca
}

// leaf issues a client certificate with the given URI and DNS SANs, valid
// from notBefore to notAfter.
func (c *testCA) leaf(t testing.TB, uris []string, dns []string, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "client"},
		NotBefore: notBefore, NotAfter: notAfter, DNSNames: dns, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &k.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// envoyEncode is the certificate as Envoy sends it in
// AttributeContext.Peer.certificate: PEM with \n, ' ', '+', '/' and '='
// percent-encoded (ConnectionInfoImplBase::urlEncodedPemEncodedPeerCertificate).
func envoyEncode(c *x509.Certificate) string {
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(pemText)
}

func mtlsFixture(t *testing.T, cfg MTLSConfig) (*MTLSVerifier, *clock) {
	t.Helper()
	c := newClock()
	v, err := NewMTLSVerifier(cfg, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v, c
}

var meshRules = MTLSConfig{Allow: []MTLSRule{
	{TrustDomain: "example.org", PathPrefix: "/ns/payments"},
	{TrustDomain: "example.org", Path: "/ns/billing/sa/invoicer"},
	{TrustDomain: "partner.example", PathPrefix: "/"},
	{DNSName: "legacy.example.com"},
}}

// TestMTLSPeers: identity from the principal, the certificate, or both
// (which must agree), under rules over trust domain, path and DNS name.
func TestMTLSPeers(t *testing.T) {
	a := getCA(t)
	nb, na := t0.Add(-time.Minute), t0.Add(time.Hour)
	svid := func(id string) string { return envoyEncode(a.leaf(t, []string{id}, nil, nb, na)) }
	payments := "spiffe://example.org/ns/payments/sa/api"
	tests := []struct {
		name      string
		principal string
		cert      string
		want      error
		subject   string
	}{
		{"principal alone", payments, "", nil, payments},
		{"certificate alone", "", svid(payments), nil, payments},
		{"both agree", payments, svid(payments), nil, payments},
		{"prefix itself", "spiffe://example.org/ns/payments", "", nil, "spiffe://example.org/ns/payments"},
		{"exact path", "spiffe://example.org/ns/billing/sa/invoicer", "", nil, "spiffe://example.org/ns/billing/sa/invoicer"},
		{"any path of a domain", "spiffe://partner.example/x", "", nil, "spiffe://partner.example/x"},
		{"DNS identity with its certificate", "legacy.example.com", envoyEncode(a.leaf(t, nil, []string{"other.example.com", "legacy.example.com"}, nb, na)), nil, "legacy.example.com"},
		{"DNS identity alone", "legacy.example.com", "", nil, "legacy.example.com"},

		{"foreign trust domain", "spiffe://evil.example/ns/payments/sa/api", "", ErrForeignTrustDomain, ""},
		{"foreign trust domain in the certificate", "", svid("spiffe://evil.example/ns/payments/sa/api"), ErrForeignTrustDomain, ""},
		{"trust domain as a suffix", "spiffe://example.org.evil.example/ns/payments", "", ErrForeignTrustDomain, ""},
		{"prefix is per segment", "spiffe://example.org/ns/paymentsx/sa/api", "", ErrPeerNotAllowed, ""},
		{"exact path is exact", "spiffe://example.org/ns/billing/sa/invoicer/x", "", ErrPeerNotAllowed, ""},
		{"no path under a prefix rule", "spiffe://example.org", "", ErrPeerNotAllowed, ""},
		{"partner domain without a path", "spiffe://partner.example", "", ErrPeerNotAllowed, ""},
		{"unlisted DNS name", "other.example.com", "", ErrPeerNotAllowed, ""},
		{"principal and certificate disagree", payments, svid("spiffe://example.org/ns/payments/sa/other"), ErrPeerMismatch, ""},
		{"principal forged beside a foreign certificate", payments, svid("spiffe://evil.example/x"), ErrPeerMismatch, ""},
		{"DNS principal not in the certificate", "legacy.example.com", envoyEncode(a.leaf(t, nil, []string{"other.example.com"}, nb, na)), ErrPeerMismatch, ""},
		{"DNS principal beside a SPIFFE certificate", "legacy.example.com", svid(payments), ErrPeerMismatch, ""},
		{"two URI SANs", "", envoyEncode(a.leaf(t, []string{payments, "spiffe://example.org/ns/payments/sa/b"}, nil, nb, na)), ErrMalformed, ""},
		{"expired certificate", payments, envoyEncode(a.leaf(t, []string{payments}, nil, nb.Add(-2*time.Hour), nb)), ErrExpired, ""},
		{"future certificate", payments, envoyEncode(a.leaf(t, []string{payments}, nil, na, na.Add(time.Hour))), ErrNotYetValid, ""},
		{"certificate not PEM", payments, "MIIB%0A", ErrMalformed, ""},
		{"certificate with trailing data", payments, svid(payments) + "junk", ErrMalformed, ""},
		{"two certificates", "", svid(payments) + svid(payments), ErrMalformed, ""},
		{"bad percent-encoding", payments, "%zz", ErrMalformed, ""},
		{"upper-case trust domain", "spiffe://Example.org/ns/payments/sa/api", "", ErrMalformed, ""},
		{"percent-encoded dot segment", "spiffe://example.org/ns/payments/%2e%2e/billing", "", ErrMalformed, ""},
		{"dot segment", "spiffe://example.org/ns/payments/../billing", "", ErrMalformed, ""},
		{"port", "spiffe://example.org:443/ns/payments/sa/api", "", ErrMalformed, ""},
		{"userinfo", "spiffe://u@example.org/ns/payments/sa/api", "", ErrMalformed, ""},
		{"query", "spiffe://example.org/ns/payments/sa/api?x=1", "", ErrMalformed, ""},
		{"subject DN as principal", "CN=client,O=x", "", ErrMalformed, ""},
		{"percent-encoded dot segment in the certificate", "", svid("spiffe://example.org/ns/payments/%2e%2e/billing"), ErrMalformed, ""},
		{"percent-encoded slash in the certificate", "", svid("spiffe://example.org/ns/payments%2Fsa"), ErrMalformed, ""},
		{"upper-case trust domain in the certificate", "", svid("spiffe://EXAMPLE.org/ns/payments/sa/api"), ErrMalformed, ""},
		{"port in the certificate's URI", "", svid("spiffe://example.org:8443/ns/payments/sa/api"), ErrMalformed, ""},
		{"query in the certificate's URI", "", svid("spiffe://example.org/ns/payments/sa/api?admin=1"), ErrMalformed, ""},
		{"https URI SAN", "", svid("https://example.org/ns/payments/sa/api"), ErrMalformed, ""},
		{"certificate without SANs", "", envoyEncode(a.leaf(t, nil, nil, nb, na)), ErrMissing, ""},
		{"nothing", "", "", ErrMissing, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := mtlsFixture(t, meshRules)
			p, err := v.Verify(context.Background(), PeerCredential(tt.principal, tt.cert))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (p.Subject != tt.subject || p.Method != MethodMTLS) {
				t.Fatalf("principal %+v, want subject %s", p, tt.subject)
			}
		})
	}
}

// TestMTLSPrincipal: what the upstream learns, and how long it is cached.
func TestMTLSPrincipal(t *testing.T) {
	a := getCA(t)
	id := "spiffe://example.org/ns/payments/sa/api"
	cert := a.leaf(t, []string{id}, nil, t0.Add(-time.Minute), t0.Add(90*time.Second))
	v, c := mtlsFixture(t, meshRules)
	cred := PeerCredential(id, envoyEncode(cert))
	p, err := v.Verify(context.Background(), cred)
	if err != nil {
		t.Fatal(err)
	}
	want := Principal{Subject: id, Issuer: "spiffe://example.org", Method: MethodMTLS, Expiry: cert.NotAfter,
		Claims: map[string]any{"trust_domain": "example.org", "spiffe_path": "/ns/payments/sa/api"}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got  %#v\nwant %#v", p, want)
	}
	if e, ok := v.cache.get(&[]cacheKey{keyOf(cred)}[0], c.Now()); !ok || !e.until.Equal(cert.NotAfter) {
		t.Fatalf("cached until %v, want the certificate's expiry %v", e.until, cert.NotAfter)
	}
	c.Advance(2 * time.Minute)
	if _, err := v.Verify(context.Background(), cred); !errors.Is(err, ErrExpired) {
		t.Fatalf("after the certificate expired: %v", err)
	}
}

// TestMTLSRequireCertificate: a principal without the certificate is
// refused when the certificate is required.
func TestMTLSRequireCertificate(t *testing.T) {
	cfg := meshRules
	cfg.RequireCertificate = true
	v, _ := mtlsFixture(t, cfg)
	if _, err := v.Verify(context.Background(), PeerCredential("spiffe://example.org/ns/payments/sa/api", "")); !errors.Is(err, ErrMissing) {
		t.Fatalf("principal alone: %v", err)
	}
	id := "spiffe://example.org/ns/payments/sa/api"
	cert := envoyEncode(getCA(t).leaf(t, []string{id}, nil, t0.Add(-time.Minute), t0.Add(time.Hour)))
	if _, err := v.Verify(context.Background(), PeerCredential(id, cert)); err != nil {
		t.Fatal(err)
	}
	big := PeerCredential(id, strings.Repeat("A", defaultMaxCertificateBytes+1))
	if _, err := v.Verify(context.Background(), big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized certificate: %v", err)
	}
}

func TestPeerCredentialRoundTrip(t *testing.T) {
	for _, tc := range [][2]string{{"p", "c"}, {"", "c"}, {"p", ""}, {"12:3", "4:5"}, {strings.Repeat("x", 3000), "y"}} {
		p, c, ok := splitPeerCredential(PeerCredential(tc[0], tc[1]))
		if !ok || p != tc[0] || c != tc[1] {
			t.Errorf("%q: got %q %q %v", tc, p, c, ok)
		}
	}
	for _, bad := range []string{"", "x", "5:abc", "-1:abc", "01:ab", "+1:ab", "999999:a"} {
		if _, _, ok := splitPeerCredential(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMTLSConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		give MTLSConfig
		want string
	}{
		{"no rules", MTLSConfig{}, "allow: at least one rule"},
		{"no trust domain", MTLSConfig{Allow: []MTLSRule{{Path: "/x"}}}, "allow[0].trust_domain: required"},
		{"scheme in trust domain", MTLSConfig{Allow: []MTLSRule{{TrustDomain: "spiffe://example.org"}}}, "without spiffe://"},
		{"upper case", MTLSConfig{Allow: []MTLSRule{{TrustDomain: "Example.org"}}}, "allow[0].trust_domain"},
		{"path and prefix", MTLSConfig{Allow: []MTLSRule{{TrustDomain: "a", Path: "/x", PathPrefix: "/y"}}}, "not both"},
		{"bad path", MTLSConfig{Allow: []MTLSRule{{TrustDomain: "a", Path: "/x/../y"}}}, "allow[0].path"},
		{"trailing slash prefix", MTLSConfig{Allow: []MTLSRule{{TrustDomain: "a", PathPrefix: "/ns/"}}}, "allow[0].path_prefix"},
		{"dns and domain", MTLSConfig{Allow: []MTLSRule{{TrustDomain: "a", DNSName: "b.example"}}}, "not both"},
		{"wildcard dns", MTLSConfig{Allow: []MTLSRule{{DNSName: "*.example"}}}, "allow[0].dns_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.give
			c.ApplyDefaults()
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestParseSPIFFEIDCases: the classes of IDs refused, several each.
func TestParseSPIFFEIDCases(t *testing.T) {
	good := []string{"spiffe://example.org", "spiffe://example.org/ns/a/sa/b", "spiffe://a-b_c.1/X.y-Z_0", "spiffe://td/..a/.b/a..", "spiffe://td/" + strings.Repeat("a", 2000)}
	bad := []string{
		"", "spiffe:", "spiffe://", "SPIFFE://example.org", "Spiffe://example.org/x", "https://example.org/x", "spiffe:/example.org/x", "spiffe:example.org",
		"spiffe://Example.org", "spiffe://EXAMPLE.ORG/x", "spiffe://exämple.org", "spiffe://example.org:8080/x", "spiffe://u@example.org/x", "spiffe://u:p@example.org/x",
		"spiffe://[::1]/x", "spiffe://example%2eorg/x", "spiffe://example.org/a%2Fb", "spiffe://example.org/%2e%2e", "spiffe://example.org/a%20b",
		"spiffe://example.org/", "spiffe://example.org//a", "spiffe://example.org/a//b", "spiffe://example.org/a/",
		"spiffe://example.org/.", "spiffe://example.org/..", "spiffe://example.org/a/./b", "spiffe://example.org/a/../b", "spiffe://example.org/a/..",
		"spiffe://example.org/a?b", "spiffe://example.org/a#b", "spiffe://example.org?x", "spiffe://example.org#x", "spiffe://example.org/a b", "spiffe://example.org/a\x00",
		"spiffe://example.org/a\\b", "spiffe://example.org/ä", "spiffe://example.org/a;b=c", "spiffe://example.org/~user", "spiffe://" + strings.Repeat("a", 256),
		"spiffe://td/" + strings.Repeat("a", 2048),
	}
	for _, s := range good {
		if _, err := ParseSPIFFEID(s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	for _, s := range bad {
		if id, err := ParseSPIFFEID(s); err == nil {
			t.Errorf("%q accepted as %+v", s, id)
		}
	}
}

// FuzzParseSPIFFEID holds ParseSPIFFEID to go-spiffe's spiffeid.FromString
// (the SPIFFE project's own reader, an independent oracle): whatever we
// accept it accepts with the same trust domain and path, and whatever it
// refuses we refuse. We refuse more only by length (the standard's 255 and
// 2048-byte bounds, which go-spiffe does not check).
func FuzzParseSPIFFEID(f *testing.F) {
	for _, s := range []string{"spiffe://example.org/ns/a/sa/b", "spiffe://example.org", "spiffe://Example.org/x", "spiffe://example.org/a/../b",
		"spiffe://example.org/%2e", "spiffe://u@td:1/x?y#z", "spiffe://td/a/", "spiffe://td//a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours, err := ParseSPIFFEID(s)
		theirs, terr := spiffeid.FromString(s)
		switch {
		case err == nil && terr != nil:
			t.Fatalf("%q: we accept, go-spiffe refuses: %v", s, terr)
		case err == nil && (ours.TrustDomain != theirs.TrustDomain().Name() || ours.Path != theirs.Path() || ours.String() != s):
			t.Fatalf("%q: we read %+v, go-spiffe %s %s", s, ours, theirs.TrustDomain().Name(), theirs.Path())
		case err != nil && terr == nil && len(s) <= maxSPIFFEIDBytes && len(theirs.TrustDomain().Name()) <= maxTrustDomainBytes:
			t.Fatalf("%q: we refuse (%v), go-spiffe accepts", s, err)
		}
		if err == nil {
			// A prefix match never crosses a segment.
			for _, prefix := range []string{"/a", "/a/b"} {
				if hasPathPrefix(ours.Path, prefix) && ours.Path != prefix && !strings.HasPrefix(ours.Path, prefix+"/") {
					t.Fatalf("%q matched prefix %q across a segment", s, prefix)
				}
			}
		}
	})
}

// FuzzMTLSCredential: any peer credential gets an answer without a panic,
// and an accepted one names an identity the rules admit.
func FuzzMTLSCredential(f *testing.F) {
	a := getCA(f)
	f.Add("spiffe://example.org/ns/payments/sa/api", envoyEncode(a.leaf(f, []string{"spiffe://example.org/ns/payments/sa/api"}, nil, t0.Add(-time.Hour), t0.Add(time.Hour))))
	f.Add("legacy.example.com", "")
	f.Add("", "-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A")
	v, err := NewMTLSVerifier(meshRules, Options{Now: func() time.Time { return t0 }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, principal, cert string) {
		p, err := v.Verify(context.Background(), PeerCredential(principal, cert))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("an mtls verifier never fails to decide: %v", err)
			}
			return
		}
		if p.Subject != "legacy.example.com" && !strings.HasPrefix(p.Subject, "spiffe://example.org/ns/") && !strings.HasPrefix(p.Subject, "spiffe://partner.example/") {
			t.Fatalf("accepted %q", p.Subject)
		}
	})
}

// TestMTLSFloodKeepsCacheBound: a flood of distinct admitted peers (and of
// refused ones) keeps the cache within its size, concurrently.
func TestMTLSFloodKeepsCacheBound(t *testing.T) {
	cfg := meshRules
	cfg.Cache.Size = 64
	v, _ := mtlsFixture(t, cfg)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				id := "spiffe://example.org/ns/payments/sa/s" + strconv.Itoa(w*1000+i)
				if _, err := v.Verify(context.Background(), PeerCredential(id, "")); err != nil {
					bad.Add(1)
				}
				if _, err := v.Verify(context.Background(), PeerCredential("spiffe://evil.example/x"+strconv.Itoa(i), "")); !errors.Is(err, ErrForeignTrustDomain) {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d wrong answers", bad.Load())
	}
	if n := v.cache.len(); n > 64+cacheShards {
		t.Fatalf("cache holds %d entries, bound 64", n)
	}
}
