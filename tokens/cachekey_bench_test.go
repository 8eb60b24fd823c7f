package tokens

import (
	"crypto/sha256"
	"crypto/sha512"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkCacheKey puts the verified-token cache key (SHA-256 of the whole
// credential) next to the other collision-resistant hash the standard
// library offers, SHA-512/256, at the sizes of the credentials it keys: a
// session id, a ticket, a small and a large JWT. On CPUs with the SHA
// extensions crypto/sha256 uses them (blockSHANI), and SHA-256 is the
// cheaper of the two; BLAKE2 (golang.org/x/crypto) measured slower still
// on this machine (loadtest/RESULTS.md).
func BenchmarkCacheKey(b *testing.B) {
	for _, n := range []int{32, 200, 600, 1200} {
		cred := strings.Repeat("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9", n/36+1)[:n]
		var sink [32]byte
		b.Run("bytes="+strconv.Itoa(n)+"/hash=sha256", func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				sink = keyOf(cred)
			}
		})
		b.Run("bytes="+strconv.Itoa(n)+"/hash=sha512_256", func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				sink = sha512.Sum512_256(stringBytes(cred))
			}
		})
		if sink == [sha256.Size]byte{} {
			b.Fatal("no hash")
		}
	}
}
