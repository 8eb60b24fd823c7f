package cli

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// pemKey is the key a PEM file holds, reduced to its public part, with a
// description for messages ("an EC P-256 key").
type pemKey struct {
	pub  crypto.PublicKey
	desc string
	// alg is the algorithm the key signs with by default (RS256 for RSA).
	alg string
}

// readPEMKey parses the first PEM block of data: a public key (PKIX or
// PKCS #1), a certificate, or a private key (PKCS #8, PKCS #1, SEC 1), of
// which only the public part is kept.
func readPEMKey(data []byte) (*pemKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found (a PEM public or private key is needed)")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = c.PublicKey
		}
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want a public key, certificate or private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot parse the %s PEM block", block.Type)
	}
	if s, ok := key.(crypto.Signer); ok {
		key = s.Public()
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		return &pemKey{pub: k, desc: fmt.Sprintf("an RSA %d-bit key", k.N.BitLen()), alg: "RS256"}, nil
	case *ecdsa.PublicKey:
		name := k.Curve.Params().Name
		algs := map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
		if algs[name] == "" {
			return nil, fmt.Errorf("EC curve %s is not supported (P-256, P-384, P-521)", name)
		}
		return &pemKey{pub: k, desc: "an EC " + name + " key", alg: algs[name]}, nil
	case ed25519.PublicKey:
		return &pemKey{pub: k, desc: "an Ed25519 key", alg: "EdDSA"}, nil
	}
	return nil, fmt.Errorf("%T keys are not supported (RSA, EC P-256/384/521, Ed25519)", key)
}

// algFamily describes the key an algorithm signs with, or "" for an
// algorithm this tool does not know.
func algFamily(alg string) string {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return "an RSA key"
	case "ES256":
		return "an EC P-256 key"
	case "ES384":
		return "an EC P-384 key"
	case "ES512":
		return "an EC P-521 key"
	case "EdDSA":
		return "an Ed25519 key"
	case "HS256", "HS384", "HS512":
		return "a base64 secret"
	}
	return ""
}

// fits reports whether alg signs with this key.
func (k *pemKey) fits(alg string) bool {
	f := algFamily(alg)
	return f != "" && (f == k.desc || (f == "an RSA key" && strings.HasPrefix(k.desc, "an RSA ")))
}

// jwk is one JSON Web Key (RFC 7517) for a public key; field order is the
// output order.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg,omitempty"`
	Crv string `json:"crv,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// newJWK is the JWK of pub, with kid set to its RFC 7638 thumbprint.
func newJWK(pub crypto.PublicKey) (*jwk, error) {
	var j *jwk
	switch k := pub.(type) {
	case *rsa.PublicKey:
		j = &jwk{Kty: "RSA", N: b64(k.N.Bytes()), E: b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		raw, err := k.Bytes() // 0x04 || X || Y, each padded to size
		if err != nil {
			return nil, err
		}
		j = &jwk{Kty: "EC", Crv: k.Curve.Params().Name, X: b64(raw[1 : 1+size]), Y: b64(raw[1+size:])}
	case ed25519.PublicKey:
		j = &jwk{Kty: "OKP", Crv: "Ed25519", X: b64(k)}
	default:
		return nil, fmt.Errorf("%T keys are not supported", pub)
	}
	j.Use = "sig"
	j.Kid = j.thumbprint()
	return j, nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url): the hash
// of the required members in lexicographic order, no whitespace (RFC 8037
// section 2 for OKP). The members are base64url and fixed names, which JSON
// does not escape.
func (j *jwk) thumbprint() string {
	var canon string
	switch j.Kty {
	case "RSA":
		canon = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, j.E, j.N)
	case "EC":
		canon = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, j.Crv, j.X, j.Y)
	case "OKP":
		canon = fmt.Sprintf(`{"crv":%q,"kty":"OKP","x":%q}`, j.Crv, j.X)
	}
	sum := sha256.Sum256([]byte(canon))
	return b64(sum[:])
}

// jwksJSON is the JWK Set document for keys, indented.
func jwksJSON(keys ...*jwk) ([]byte, error) {
	return json.MarshalIndent(struct {
		Keys []*jwk `json:"keys"`
	}{keys}, "", "  ")
}
