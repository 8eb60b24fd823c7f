package tokens

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MethodMTLS is the Principal.Method of a caller identified by its client
// certificate.
const MethodMTLS = "mtls"

// Reasons a TLS peer is refused, besides the shared ones.
var (
	// ErrForeignTrustDomain: a SPIFFE ID of a trust domain no rule names.
	ErrForeignTrustDomain = &CredentialError{Reason: "foreign_trust_domain"}
	// ErrPeerNotAllowed: a known trust domain, but no rule admits the
	// path (or the DNS name).
	ErrPeerNotAllowed = &CredentialError{Reason: "peer_not_allowed"}
	// ErrPeerMismatch: the source principal and the certificate disagree.
	ErrPeerMismatch = &CredentialError{Reason: "peer_mismatch"}
)

// MTLSConfig configures an MTLSVerifier (authenticator kind mtls), whose
// credential is the gateway's TLS peer (source: {peer: true}): the
// principal Envoy reports for the verified client certificate and, with
// include_peer_certificate, the certificate itself.
//
// The certificate chain is verified by the gateway (mutual TLS on the
// Gateway): the verifier trusts what Envoy reports and decides who may
// call; it never sees a peer Envoy did not verify.
type MTLSConfig struct {
	// Allow are the identities admitted; a peer matching none is refused.
	Allow []MTLSRule `yaml:"allow"`
	// RequireCertificate refuses a peer whose certificate the gateway did
	// not send (include_peer_certificate off), so that the principal is
	// always checked against the certificate's SANs and validity.
	RequireCertificate bool `yaml:"require_certificate"`
	// MaxCertificateBytes bounds the URL-encoded certificate; default 16 KiB.
	MaxCertificateBytes int `yaml:"max_certificate_bytes"`
	// Cache bounds the verified-peer cache.
	Cache CacheConfig `yaml:"cache"`
}

// MTLSRule admits SPIFFE IDs of one trust domain (all of them, one path,
// or the paths under a prefix), or one DNS name (a certificate without a
// URI SAN, which Envoy identifies by its first DNS SAN).
type MTLSRule struct {
	TrustDomain string `yaml:"trust_domain"`
	// Path admits exactly this SPIFFE path.
	Path string `yaml:"path"`
	// PathPrefix admits this path and those under it, segment by segment.
	PathPrefix string `yaml:"path_prefix"`
	// DNSName admits a certificate identified by this DNS SAN.
	DNSName string `yaml:"dns_name"`
}

const defaultMaxCertificateBytes = 16 << 10

// ApplyDefaults fills in unset fields.
func (c *MTLSConfig) ApplyDefaults() {
	if c.MaxCertificateBytes == 0 {
		c.MaxCertificateBytes = defaultMaxCertificateBytes
	}
	c.Cache.applyDefaults()
}

// Validate checks the config; paths are relative to the mtls section.
func (c *MTLSConfig) Validate() error {
	var errs []error
	if len(c.Allow) == 0 {
		errs = append(errs, errorf("allow", "at least one rule is required"))
	}
	for i, r := range c.Allow {
		p := fmt.Sprintf("allow[%d].", i)
		switch {
		case r.DNSName != "":
			if r.TrustDomain != "" || r.Path != "" || r.PathPrefix != "" {
				errs = append(errs, errorf(p+"dns_name", "a rule is a dns_name or a trust_domain, not both"))
			} else if !validDNSName(r.DNSName) {
				errs = append(errs, errorf(p+"dns_name", "%q is not a lower-case DNS name", r.DNSName))
			}
		case r.TrustDomain == "":
			errs = append(errs, errorf(p+"trust_domain", "required (or dns_name)"))
		case !validTrustDomain(r.TrustDomain):
			errs = append(errs, errorf(p+"trust_domain", "%q: %v (write the name alone, without spiffe://)", r.TrustDomain, errSPIFFETrustDomain))
		case r.Path != "" && r.PathPrefix != "":
			errs = append(errs, errorf(p+"path", "set path or path_prefix, not both"))
		case r.Path != "" && !validSPIFFEPath(r.Path):
			errs = append(errs, errorf(p+"path", "%q: %v", r.Path, errSPIFFEPath))
		case r.PathPrefix != "" && r.PathPrefix != "/" && !validSPIFFEPath(r.PathPrefix):
			errs = append(errs, errorf(p+"path_prefix", "%q: %v", r.PathPrefix, errSPIFFEPath))
		}
	}
	if c.MaxCertificateBytes < 0 {
		errs = append(errs, errorf("max_certificate_bytes", "must not be negative"))
	}
	errs = append(errs, c.Cache.validate())
	return errors.Join(errs...)
}

// validDNSName: lower-case LDH labels, dot-separated, no wildcard.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// PeerCredential is the credential of a TLS peer: the source principal and
// the URL-encoded PEM certificate (either may be empty), packed into one
// string for Verifier.Verify. Empty when both are.
func PeerCredential(principal, certificate string) string {
	if principal == "" && certificate == "" {
		return ""
	}
	return strconv.Itoa(len(principal)) + ":" + principal + certificate
}

// splitPeerCredential undoes PeerCredential.
func splitPeerCredential(s string) (principal, certificate string, ok bool) {
	n, rest, found := strings.Cut(s, ":")
	if !found || len(n) > 5 {
		return "", "", false
	}
	l, err := strconv.Atoi(n)
	if err != nil || l < 0 || l > len(rest) || strconv.Itoa(l) != n {
		return "", "", false
	}
	return rest[:l], rest[l:], true
}

// MTLSVerifier decides whether a gateway's TLS peer may call, by its SPIFFE
// ID (or DNS name) under the configured rules. Accepted peers are cached
// (until the certificate expires, at most cache.max_ttl).
type MTLSVerifier struct {
	cfg MTLSConfig
	front
}

// NewMTLSVerifier validates cfg (after defaults) and returns the verifier.
func NewMTLSVerifier(cfg MTLSConfig, opts Options) (*MTLSVerifier, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts.applyDefaults()
	m := newMetrics(opts.Registerer)
	return &MTLSVerifier{cfg: cfg, front: front{
		maxBytes: cfg.MaxCertificateBytes + maxSPIFFEIDBytes + 8,
		maxTTL:   cfg.Cache.MaxTTL,
		cache:    newVerifiedCache(cfg.Cache.Size),
		counters: m.cacheCounters(MethodMTLS),
		now:      opts.Now,
	}}, nil
}

// Verify decides on a peer credential (PeerCredential); see Verifier in
// package authz for the error contract. It never needs the network.
//
// Revocation does not apply: the front's list is never set for mTLS peers
// (a peer is revoked at its certificate authority, or by the policy).
func (v *MTLSVerifier) Verify(ctx context.Context, credential string) (Principal, error) {
	p, key, now, hit, err := v.lookup(ctx, credential)
	if hit || err != nil {
		return p, err
	}
	principal, cert, ok := splitPeerCredential(credential)
	if !ok {
		return Principal{}, ErrMalformed
	}
	p, err = v.peer(principal, cert, now)
	if err != nil {
		return Principal{}, err
	}
	if err := v.remember(ctx, &key, &p, &revIDs{}, now); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// peer finds the peer's identity and applies the rules.
func (v *MTLSVerifier) peer(principal, certificate string, now time.Time) (Principal, error) {
	if certificate == "" && v.cfg.RequireCertificate {
		return Principal{}, ErrMissing
	}
	var expiry time.Time
	if certificate != "" {
		if len(certificate) > v.cfg.MaxCertificateBytes {
			return Principal{}, ErrTooLarge
		}
		c, err := parsePeerCertificate(certificate)
		if err != nil {
			return Principal{}, ErrMalformed
		}
		switch {
		case now.Before(c.NotBefore):
			return Principal{}, ErrNotYetValid
		case now.After(c.NotAfter):
			return Principal{}, ErrExpired
		}
		id, err := certificateIdentity(c, principal)
		if err != nil {
			return Principal{}, err
		}
		principal, expiry = id, c.NotAfter
	}
	if principal == "" {
		return Principal{}, ErrMissing
	}
	p, err := v.admit(principal)
	if err != nil {
		return Principal{}, err
	}
	p.Expiry = expiry
	return p, nil
}

// certificateIdentity is the identity a certificate proves, which the
// source principal (when Envoy sent one) must equal: its URI SAN (an
// X.509-SVID has exactly one), or for a certificate without one, the
// principal among its DNS SANs.
//
// The URI SAN is read as the CA wrote it, not as Go's URL parser
// re-renders it (which lower-cases the scheme and drops an empty
// fragment): ParseSPIFFEID must judge the bytes Envoy and the upstream
// see. A DNS SAN is a DNS name, never a SPIFFE ID, even when it spells
// one: a CA trusted for DNS names does not mint mesh identities.
func certificateIdentity(c *x509.Certificate, principal string) (string, error) {
	switch {
	case len(c.URIs) > 1:
		return "", ErrMalformed
	case len(c.URIs) == 1:
		uri, ok := rawURISAN(c)
		if !ok {
			return "", ErrMalformed
		}
		if principal != "" && principal != uri {
			return "", ErrPeerMismatch
		}
		return uri, nil
	case principal == "":
		return "", ErrMissing
	case strings.HasPrefix(principal, spiffeScheme):
		return "", ErrMalformed // see above: only a URI SAN is a SPIFFE ID
	case slices.Contains(c.DNSNames, principal):
		return principal, nil
	}
	return "", ErrPeerMismatch
}

// oidSubjectAltName is the subjectAltName extension (RFC 5280 4.2.1.6).
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// rawURISAN is the certificate's one uniformResourceIdentifier
// GeneralName, as encoded. ok is false unless there is exactly one.
func rawURISAN(c *x509.Certificate) (string, bool) {
	var uri string
	n := 0
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) > 0 || !seq.IsCompound || seq.Tag != asn1.TagSequence {
			return "", false
		}
		for b := seq.Bytes; len(b) > 0; {
			var v asn1.RawValue
			rest, err := asn1.Unmarshal(b, &v)
			if err != nil {
				return "", false
			}
			b = rest
			if v.Class == asn1.ClassContextSpecific && v.Tag == 6 { // uniformResourceIdentifier
				uri, n = string(v.Bytes), n+1
			}
		}
	}
	return uri, n == 1
}

// parsePeerCertificate reads the URL-encoded PEM Envoy sends: exactly one
// CERTIFICATE block and nothing else but white space.
func parsePeerCertificate(s string) (*x509.Certificate, error) {
	// Path unescaping: Envoy percent-encodes every reserved byte, so a '+'
	// is a base64 '+', never a space.
	raw, err := url.PathUnescape(s)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode([]byte(raw))
	if block == nil || block.Type != "CERTIFICATE" || len(block.Headers) > 0 || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("want one PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// admit applies the rules to an identity.
func (v *MTLSVerifier) admit(identity string) (Principal, error) {
	if !strings.HasPrefix(identity, spiffeScheme) {
		name := strings.TrimSuffix(identity, ".")
		for _, r := range v.cfg.Allow {
			if r.DNSName != "" && r.DNSName == name {
				return Principal{Subject: name, Issuer: "x509", Method: MethodMTLS}, nil
			}
		}
		if !validDNSName(name) {
			return Principal{}, ErrMalformed
		}
		return Principal{}, ErrPeerNotAllowed
	}
	id, err := ParseSPIFFEID(identity)
	if err != nil {
		return Principal{}, ErrMalformed
	}
	known := false
	for _, r := range v.cfg.Allow {
		if r.TrustDomain != id.TrustDomain {
			continue
		}
		known = true
		if r.Path != "" && id.Path != r.Path || r.PathPrefix != "" && !hasPathPrefix(id.Path, r.PathPrefix) {
			continue
		}
		return Principal{
			Subject: identity,
			Issuer:  spiffeScheme + id.TrustDomain,
			Method:  MethodMTLS,
			Claims:  map[string]any{"trust_domain": id.TrustDomain, "spiffe_path": id.Path},
		}, nil
	}
	if !known {
		return Principal{}, ErrForeignTrustDomain
	}
	return Principal{}, ErrPeerNotAllowed
}
