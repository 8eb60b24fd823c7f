package tokens

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

// JWTSigner mints JWTs with a local key, for development and load tests
// (`ext-authz token mint --kind jwt`). Real tokens come from the issuers.
type JWTSigner struct {
	kid    string
	method jwt.SigningMethod
	key    any
}

// NewJWTSigner reads a private key file. PEM keys (PKCS #8, PKCS #1 RSA or
// SEC 1 EC) sign with RS256, ES256/384/512 (by curve) or EdDSA; alg may
// override the RSA choice (RS384, PS256, ...). With alg HS256/384/512 the file
// holds a base64 secret instead, as for tickets. kid may be empty.
func NewJWTSigner(keyFile, kid, alg string) (*JWTSigner, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	s := &JWTSigner{kid: kid}
	if len(alg) > 2 && alg[:2] == "HS" {
		secret, err := decodeBase64Secret(string(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyFile, err)
		}
		if len(secret) < minHMACKeyBytes {
			return nil, fmt.Errorf("%s: HMAC key has %d bytes, need at least %d", keyFile, len(secret), minHMACKeyBytes)
		}
		s.key = secret
	} else {
		if s.key, err = parsePrivateKeyPEM(data); err != nil {
			return nil, fmt.Errorf("%s: %w", keyFile, err)
		}
		if alg == "" {
			alg = defaultAlg(s.key)
		}
	}
	s.method = jwt.GetSigningMethod(alg)
	if s.method == nil || alg == "none" {
		return nil, fmt.Errorf("unknown algorithm %q", alg)
	}
	k := &verificationKey{key: publicOf(s.key)}
	if !keyFits(k, alg) {
		return nil, fmt.Errorf("algorithm %s does not fit a %T key", alg, s.key)
	}
	return s, nil
}

// Alg is the signing algorithm.
func (s *JWTSigner) Alg() string { return s.method.Alg() }

// Sign returns the signed token for claims.
func (s *JWTSigner) Sign(claims map[string]any) (string, error) {
	t := jwt.NewWithClaims(s.method, jwt.MapClaims(claims))
	if s.kid != "" {
		t.Header["kid"] = s.kid
	}
	return t.SignedString(s.key)
}

func parsePrivateKeyPEM(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("cannot parse PKCS #8 private key")
		}
		return k, nil
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("cannot parse PKCS #1 private key")
		}
		return k, nil
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("cannot parse SEC 1 private key")
		}
		return k, nil
	}
	return nil, fmt.Errorf("PEM block is %q, want a private key", block.Type)
}

func defaultAlg(key any) string {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return "RS256"
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P384():
			return "ES384"
		case elliptic.P521():
			return "ES512"
		}
		return "ES256"
	case ed25519.PrivateKey:
		return "EdDSA"
	}
	return ""
}

func publicOf(key any) any {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	return key // []byte secrets
}
