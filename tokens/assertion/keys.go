package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// Signing algorithms.
const (
	ES256 = "ES256" // ECDSA P-256 with SHA-256 (RFC 7518 3.4)
	EdDSA = "EdDSA" // Ed25519 (RFC 8037)
)

// Key is one assertion key: its public half, always, and its private half
// when it can sign (a key published only, such as the previous key read
// from a public key file, cannot).
type Key struct {
	// ID is the kid: the key's RFC 7638 thumbprint, so every replica that
	// reads the same key file names it the same.
	ID string
	// Alg is ES256 or EdDSA.
	Alg    string
	pub    crypto.PublicKey
	signer crypto.Signer // nil: published only
	jwk    jwk
}

// PublicPEM is the key's public half as a PEM PUBLIC KEY (PKIX): what
// published_key_files may hold, and what a verifier may pin.
func (k *Key) PublicPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		return nil // EC P-256 and Ed25519 keys always marshal
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// CanSign reports whether the key has its private half.
func (k *Key) CanSign() bool { return k.signer != nil }

// GenerateKey makes a fresh key for alg (ES256 or EdDSA).
func GenerateKey(alg string) (*Key, error) {
	switch alg {
	case ES256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate ES256 key: %w", err)
		}
		return newKey(priv)
	case EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate EdDSA key: %w", err)
		}
		return newKey(priv)
	}
	return nil, fmt.Errorf("algorithm %q is not ES256 or EdDSA", alg)
}

// ParseKeyPEM reads the first PEM block of data: a private key (PKCS #8,
// or SEC 1 for EC), which can sign, or a public key (PKIX), which is only
// published. Only EC P-256 and Ed25519 keys are accepted. Errors never
// quote the key.
func ParseKeyPEM(data []byte) (*Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found (want a PEM EC P-256 or Ed25519 key)")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY, EC PRIVATE KEY or PUBLIC KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot parse the %s PEM block", block.Type)
	}
	return newKey(key)
}

// newKey wraps a private or public EC P-256 or Ed25519 key.
func newKey(key any) (*Key, error) {
	k := &Key{}
	switch x := key.(type) {
	case *ecdsa.PrivateKey:
		k.signer, key = x, &x.PublicKey
	case ed25519.PrivateKey:
		k.signer, key = x, x.Public()
	}
	switch x := key.(type) {
	case *ecdsa.PublicKey:
		if x.Curve != elliptic.P256() {
			return nil, fmt.Errorf("EC key on %s: only P-256 (ES256) is supported", x.Curve.Params().Name)
		}
		b, err := x.Bytes() // 0x04 || X || Y, 32 bytes each
		if err != nil {
			return nil, fmt.Errorf("EC key: %w", err)
		}
		k.Alg, k.pub = ES256, x
		k.jwk = jwk{Kty: "EC", Crv: "P-256", X: b64(b[1:33]), Y: b64(b[33:65])}
	case ed25519.PublicKey:
		k.Alg, k.pub = EdDSA, x
		k.jwk = jwk{Kty: "OKP", Crv: "Ed25519", X: b64(x)}
	default:
		return nil, fmt.Errorf("a %T key: only EC P-256 (ES256) and Ed25519 (EdDSA) keys sign assertions", key)
	}
	k.ID = k.jwk.thumbprint()
	k.jwk.Kid, k.jwk.Alg, k.jwk.Use = k.ID, k.Alg, "sig"
	return k, nil
}

// jwk is a public key as RFC 7517 writes it.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// thumbprint is the RFC 7638 thumbprint: SHA-256 over the required
// members in lexicographic order, without spaces.
func (j *jwk) thumbprint() string {
	var s string
	if j.Kty == "EC" {
		s = `{"crv":"` + j.Crv + `","kty":"EC","x":"` + j.X + `","y":"` + j.Y + `"}`
	} else {
		s = `{"crv":"` + j.Crv + `","kty":"OKP","x":"` + j.X + `"}`
	}
	sum := sha256.Sum256([]byte(s))
	return b64(sum[:])
}

// marshalJWKS renders keys as a JWK Set.
func marshalJWKS(keys []*Key) []byte {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk)
	}
	b, _ := json.Marshal(set) // strings only: cannot fail
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// sign returns the JWS signature of input (RFC 7518 3.4: R || S, 32 bytes
// each, for ES256; RFC 8037 for EdDSA).
func (k *Key) sign(input []byte) ([]byte, error) {
	switch s := k.signer.(type) {
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(input)
		r, sv, err := ecdsa.Sign(rand.Reader, s, h[:])
		if err != nil {
			return nil, fmt.Errorf("sign ES256: %w", err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		sv.FillBytes(out[32:])
		return out, nil
	case ed25519.PrivateKey:
		return ed25519.Sign(s, input), nil
	}
	return nil, errors.New("key cannot sign: it has no private half")
}

// verify checks a signature made by sign; for tests and for the key
// files' self-check (a key that cannot verify what it signs is refused).
func (k *Key) verify(input, sig []byte) bool {
	switch p := k.pub.(type) {
	case *ecdsa.PublicKey:
		if len(sig) != 64 {
			return false
		}
		h := sha256.Sum256(input)
		return ecdsa.Verify(p, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	case ed25519.PublicKey:
		return ed25519.Verify(p, input, sig)
	}
	return false
}
