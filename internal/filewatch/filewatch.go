// Package filewatch decides when files a server reads have changed, by
// content, and when a change is complete enough to apply.
//
// Content, not mtime: a Kubernetes ConfigMap or Secret update swaps a
// symlink and keeps old timestamps. A file is digested from the bytes
// read; a caller that parses the bytes it digested (DigestBytes) never
// applies content other than what it compared.
//
// Complete: a file rewritten in place can be read half-written, and a
// prefix of a config can be valid and mean something else (a rule cut
// before its scope requirement). Settle applies a change only once the
// same content has been seen for a whole quiet interval, over at least two
// observations. A writer that pauses longer than that can still be seen
// mid-write: write a new file and rename it over the old one.
package filewatch

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Digests maps a path to a digest of its content.
type Digests map[string]string

// DigestBytes is the digest of content read from a file.
func DigestBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Digest is the digest of a file's content; of a directory's regular,
// non-hidden files (names and contents, not recursive: a ConfigMap
// directory's ..data links are hidden); or "unreadable: " and the error.
func Digest(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	if !st.IsDir() {
		return digestFile(path)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	h := sha256.New()
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(path, e.Name())
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			continue
		}
		fmt.Fprintf(h, "%s\x00%s\x00", e.Name(), Digest(p))
	}
	return "dir:" + hex.EncodeToString(h.Sum(nil))
}

// digestFile is DigestBytes of the file's content, streamed: a key file
// of a million API keys is digested on every poll, and must not be held in
// memory to do it.
func digestFile(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unreadable: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// DigestAll digests every path.
func DigestAll(paths []string) Digests {
	out := make(Digests, len(paths)+1)
	for _, p := range paths {
		out[p] = Digest(p)
	}
	return out
}

// Agree reports whether d and o have the same digest for every path both
// hold (a new config may reference files the old one did not).
func (d Digests) Agree(o Digests) bool {
	for p, v := range o {
		if w, ok := d[p]; ok && w != v {
			return false
		}
	}
	return true
}

// Settle decides when changed files are complete: when the same content
// has been seen for at least one whole quiet interval (two observations
// in quick succession, as a ticker gives after a stall, are not an
// interval). The zero value is ready to use.
type Settle struct {
	pending Digests
	since   time.Time
	// tried is the content the last attempt used: a rejected file is
	// reported once, not on every poll.
	tried Digests
}

// Observe records the content seen at now, given the content in use, and
// reports whether cur should be applied now.
func (st *Settle) Observe(cur, live Digests, now time.Time, quiet time.Duration) bool {
	if maps.Equal(cur, live) || maps.Equal(cur, st.tried) {
		st.pending = nil
		return false
	}
	if st.pending == nil || !maps.Equal(cur, st.pending) {
		st.pending, st.since = cur, now
		return false
	}
	if now.Sub(st.since) < quiet {
		return false
	}
	st.pending, st.tried = nil, cur
	return true
}

// Retry forgets the last attempt, so the same content is tried again (the
// attempt could not read it consistently).
func (st *Settle) Retry() { st.tried = nil }
