// Package answerbuf recycles the buffers the lean gRPC paths (Check in
// authz/extauthz, ShouldRateLimit in ratelimit/rls) write their answers
// into. An answer is appended into a buffer taken empty, handed to grpc-go
// as a mem.Buffer (mem.NewBuffer(bp, pool)), and grpc-go gives it back with
// Put once the answer is written.
package answerbuf

import (
	"sync"

	"google.golang.org/grpc/mem"
)

// Min is the capacity a new buffer starts with. mem.NewBuffer returns a
// buffer of at most grpc-go's pooling threshold (1 KiB) as a plain slice
// that is never given back to its pool, so a smaller one would be
// allocated afresh on every call; answers are tens to a few hundred bytes.
const Min = 2 << 10

// Max bounds the buffers kept: an answer with a large denial body is not
// worth keeping.
const Max = 16 << 10

// Pool is a mem.BufferPool of growable buffers; the zero value is ready.
type Pool struct{ p sync.Pool }

var _ mem.BufferPool = (*Pool)(nil)

// Get returns a buffer of length bytes with a capacity of at least Min.
func (p *Pool) Get(length int) *[]byte {
	if bp, ok := p.p.Get().(*[]byte); ok && cap(*bp) >= length {
		*bp = (*bp)[:length]
		return bp
	}
	b := make([]byte, length, max(length, Min))
	return &b
}

// Put keeps bp for a later Get unless it grew past Max.
func (p *Pool) Put(bp *[]byte) {
	if cap(*bp) > Max {
		return
	}
	p.p.Put(bp)
}
