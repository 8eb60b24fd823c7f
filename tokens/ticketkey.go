package tokens

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Ticket signature algorithms. The algorithm belongs to the key (chosen by
// key id in the verifier's config), never to the ticket.
const (
	TicketHS256 = "HS256" // HMAC-SHA256, a shared secret of at least 32 bytes
	TicketEdDSA = "EdDSA" // Ed25519
)

// minHMACKeyBytes is the shortest HMAC-SHA256 key accepted: the hash size,
// as RFC 7518 section 3.2 requires.
const minHMACKeyBytes = 32

// ticketKeyMaterial is one key read from a file.
type ticketKeyMaterial struct {
	secret []byte             // HS256
	public ed25519.PublicKey  // EdDSA: verifying
	signer ed25519.PrivateKey // EdDSA: signing, nil when only the public key was given
}

// readTicketKey reads a key file for alg. HS256 files hold the secret in
// base64 (standard or URL alphabet, padding optional; surrounding whitespace
// ignored). EdDSA files hold a PEM "PUBLIC KEY" (PKIX) or "PRIVATE KEY"
// (PKCS #8). Errors name the file but never include its contents.
func readTicketKey(path, alg string) (ticketKeyMaterial, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ticketKeyMaterial{}, err
	}
	switch alg {
	case TicketHS256:
		secret, err := decodeBase64Secret(string(data))
		if err != nil {
			return ticketKeyMaterial{}, fmt.Errorf("%s: %w", path, err)
		}
		if len(secret) < minHMACKeyBytes {
			return ticketKeyMaterial{}, fmt.Errorf("%s: HS256 key has %d bytes, need at least %d", path, len(secret), minHMACKeyBytes)
		}
		return ticketKeyMaterial{secret: secret}, nil
	case TicketEdDSA:
		pub, priv, err := parseEd25519PEM(data)
		if err != nil {
			return ticketKeyMaterial{}, fmt.Errorf("%s: %w", path, err)
		}
		return ticketKeyMaterial{public: pub, signer: priv}, nil
	}
	return ticketKeyMaterial{}, fmt.Errorf("unsupported ticket algorithm %q", alg)
}

func decodeBase64Secret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		s = strings.NewReplacer("-", "+", "_", "/").Replace(s)
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("key is not valid base64")
	}
	return b, nil
}

func parseEd25519PEM(data []byte) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, errors.New("no PEM block found")
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, nil, errors.New("cannot parse PKIX public key")
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, nil, fmt.Errorf("public key is %T, not Ed25519", k)
		}
		return pub, nil, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, nil, errors.New("cannot parse PKCS #8 private key")
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("private key is %T, not Ed25519", k)
		}
		return priv.Public().(ed25519.PublicKey), priv, nil
	}
	return nil, nil, fmt.Errorf("PEM block is %q, want PUBLIC KEY or PRIVATE KEY", block.Type)
}
