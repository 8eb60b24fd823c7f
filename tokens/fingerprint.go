package tokens

import (
	"crypto/sha256"
	"encoding/hex"
	"unsafe"
)

// Fingerprint returns a short, stable, non-reversible name for a credential
// (the first 8 bytes of its SHA-256, in hex) to correlate log lines without
// logging the credential.
func Fingerprint(credential string) string {
	sum := sha256.Sum256(stringBytes(credential))
	return hex.EncodeToString(sum[:8])
}

// stringBytes returns the bytes of s without copying. The result must not be
// modified; it is only read by hash functions here.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
