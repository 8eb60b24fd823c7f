package filewatch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDigestFileMatchesBytes: a file's streamed digest is the digest of
// the bytes a caller reads and parses (DigestBytes), for empty, small and
// larger-than-one-buffer files, and an unreadable file says so.
func TestDigestFileMatchesBytes(t *testing.T) {
	dir := t.TempDir()
	for _, body := range []string{"", "keys: []\n", strings.Repeat("0123456789abcdef", 1<<14)} {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, want := Digest(p), DigestBytes([]byte(body)); got != want {
			t.Errorf("%d bytes: Digest %s, DigestBytes %s", len(body), got, want)
		}
	}
	if got := Digest(filepath.Join(dir, "missing")); !strings.HasPrefix(got, "unreadable: ") {
		t.Errorf("missing file: %q", got)
	}
}
