// Package logcapture is a log sink for tests: a buffer that a logger (or a
// server the test started) writes to while the test reads it. It imports
// the standard library only, so any package's own tests can use it.
package logcapture

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer safe to write and read concurrently.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
