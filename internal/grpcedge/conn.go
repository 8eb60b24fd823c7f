package grpcedge

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// errAbusive is what grpc-go reads from a connection the edge has closed
// for its resets.
var errAbusive = errors.New("grpcedge: connection closed: too many early stream resets")

// After a connection goes over its budget it is sent GOAWAY: a client
// that honours it (Envoy) finishes the calls in flight and moves to a new
// connection, so no legitimate call fails. The connection is closed when
// the client shows it ignores the GOAWAY (a new stream opened longer than
// newStreamGrace after it, or a second budget of early resets), or after
// drainMax.
const (
	newStreamGrace = time.Second
	drainMax       = 10 * time.Second
)

// A client that withholds flow-control window makes the server keep its
// answers: grpc-go queues them in memory until the window opens, with no
// deadline. The edge closes a connection whose client sets a stream
// window under minClientWindow (no gRPC client or Envoy does; every answer
// of ours fits in it), or leaves the connection's window under
// minClientWindow for WriteTimeout.
const minClientWindow = 16 << 10

// marksLen is the number of stream-open checkpoints a connection keeps:
// one per EarlyResetWindow/16, so they span the window with room to
// spare, in a fixed array (no allocation per connection or stream).
const marksLen = 17

// mark says that stream (and every later one) opened no earlier than at.
type mark struct {
	stream uint32
	at     time.Duration // since the connection was accepted
}

// conn follows one connection's frames. The read side is touched only by
// grpc-go's reader goroutine; the write side is under wmu.
type conn struct {
	net.Conn
	l    *Listener
	born time.Time
	once sync.Once

	in        frameScanner
	onIn      func(frameHeader) bool
	maxStream uint32 // highest stream the client opened (and grpc-go read)
	// goAwayLast is maxStream when the edge decided on GOAWAY: the
	// streams a client that honours it may still finish or reset.
	goAwayLast uint32
	streams    int
	early      int
	marks      [marksLen]mark
	nmarks     int
	head       int // index of the newest mark
	draining   bool
	goAwayAt   time.Duration
	tripped    bool
	drain      atomic.Pointer[time.Timer]
	// goAway is the frame waiting for the next frame boundary in what
	// the server writes, when it could not be written at once.
	goAway atomic.Pointer[[]byte]

	wmu   sync.Mutex
	out   frameScanner
	onOut func(frameHeader) bool
	dead  bool // nothing more may be written
	// sentLast is the last stream id of the edge's GOAWAY once written
	// (sentGoAway). grpc-go knows nothing of it and later sends its own
	// (max_connection_age, GracefulStop: first 2^31-1, then its highest
	// stream); RFC 9113 6.8 forbids raising the id, and Envoy and grpc-go
	// clients treat a raise as a connection error that fails the calls in
	// flight, so those ids are lowered to sentLast as they pass.
	sentGoAway bool
	sentLast   uint32
	// cmp is, within the id of the GOAWAY passing now, how the bytes
	// seen so far compare with sentLast's (big-endian: the first
	// difference decides): 0 equal, -1 lower (kept), 1 higher (replaced).
	cmp int

	// window is the connection-level window the client has granted and
	// the server not yet used: WINDOW_UPDATEs in, DATA out.
	window      atomic.Int64
	tinyWindow  bool // an entry of the client's SETTINGS set a stream window too small
	stallMu     sync.Mutex
	stall       *time.Timer // armed while window < minClientWindow
	closeReason atomic.Pointer[string]
	closed      atomic.Bool // Close was called
}

func newConn(c net.Conn, l *Listener) *conn {
	cc := &conn{Conn: c, l: l, born: time.Now(), in: frameScanner{preface: clientPrefaceLen}}
	cc.onIn = cc.frameIn
	cc.in.wantPayload, cc.in.onPayload = controlPayload, cc.payloadIn
	cc.onOut = cc.frameOut
	cc.out.wantBytes = func(h frameHeader) bool { return h.typ == frameGoAway && cc.sentGoAway }
	cc.out.onBytes = cc.lowerGoAway
	cc.window.Store(initialWindow)
	return cc
}

// Read passes the client's bytes to grpc-go up to the frame that takes
// the connection over its reset budget; from then on it fails.
func (c *conn) Read(p []byte) (int, error) {
	if c.tripped {
		return 0, errAbusive
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if k, ok := c.in.scan(p[:n], c.onIn); !ok {
			c.trip()
			if k == 0 {
				return 0, errAbusive
			}
			return k, nil
		}
		if c.tinyWindow {
			c.tripped = true
			c.closeFor(CloseFlowControl)
			return 0, errAbusive
		}
	}
	return n, err
}

// payloadIn sees each entry of the client's SETTINGS and the increment of
// its connection WINDOW_UPDATEs.
func (c *conn) payloadIn(h frameHeader, p []byte) {
	switch h.typ {
	case frameSettings:
		if v, ok := initialWindowSetting(p); ok && v < minClientWindow {
			c.tinyWindow = true
		}
	case frameWindowUpdate:
		if len(p) == 4 {
			inc := int64(binary.BigEndian.Uint32(p) & (1<<31 - 1))
			if c.window.Add(inc) >= minClientWindow {
				c.stallMu.Lock()
				if c.stall != nil {
					c.stall.Stop()
					c.stall = nil
				}
				c.stallMu.Unlock()
			}
		}
	}
}

// frameOut sees each frame header the server writes.
func (c *conn) frameOut(h frameHeader) bool {
	if h.typ == frameData {
		c.window.Add(-int64(h.length))
	}
	return true
}

// checkWindow arms the stall timer when the client has let the
// connection's window run low. The caller holds wmu.
func (c *conn) checkWindow() {
	wt := c.l.opts.WriteTimeout
	if wt <= 0 || c.window.Load() >= minClientWindow {
		return
	}
	c.stallMu.Lock()
	defer c.stallMu.Unlock()
	if c.stall == nil {
		c.stall = time.AfterFunc(wt, func() {
			if c.window.Load() < minClientWindow {
				c.closeFor(CloseFlowControl)
			}
		})
	}
}

// closeFor closes the connection for reason, counted once.
func (c *conn) closeFor(reason string) {
	if c.closed.Load() || !c.closeReason.CompareAndSwap(nil, &reason) {
		return // already closed by grpc-go, or for another reason
	}
	if m := c.l.opts.Metrics; m != nil {
		m.closed.WithLabelValues(reason).Inc()
	}
	_ = c.Conn.Close()
}

// frameIn sees each frame header the client sends; false trips the
// connection.
func (c *conn) frameIn(h frameHeader) bool {
	switch h.typ {
	case frameHeaders:
		// Client streams have rising odd ids: a higher one is a new
		// stream, a lower one trailers or a protocol error grpc-go
		// answers itself.
		if h.stream > c.maxStream {
			if c.draining && time.Since(c.born)-c.goAwayAt > newStreamGrace {
				return false // it ignores the GOAWAY
			}
			c.maxStream = h.stream
			c.streams++
			c.mark(h.stream)
		}
	case frameRSTStream:
		early := c.isEarly(h.stream)
		if m := c.l.opts.Metrics; m != nil {
			if early {
				m.resetsEarly.Inc()
			} else {
				m.resetsLate.Inc()
			}
		}
		b := c.l.opts.ResetBudget
		if !early || b < 0 {
			return true
		}
		if c.draining && h.stream <= c.goAwayLast {
			// A stream opened before the GOAWAY: the client cancelling
			// its calls in flight (Envoy's timeout firing on an
			// overloaded server, whose reader sees HEADERS and RST_STREAM
			// together and so judges the reset early) is not going on
			// with the attack; only streams it opens after the GOAWAY are.
			return true
		}
		c.early++
		switch {
		case c.draining:
			return c.early <= 2*b
		case c.early > b && 2*c.early > c.streams:
			c.startDrain()
		}
	}
	return true
}

// startDrain sends GOAWAY (ENHANCE_YOUR_CALM) naming the last stream
// grpc-go has seen: at once when the server is between frames and not
// blocked writing, else after the server's next whole frame.
func (c *conn) startDrain() {
	c.draining = true
	c.goAwayAt = time.Since(c.born)
	c.goAwayLast = c.maxStream
	if m := c.l.opts.Metrics; m != nil {
		m.goAways.Inc()
	}
	f := goAwayFrame(c.maxStream, errCodeEnhanceYourCalm, "too many early stream resets")
	c.goAway.Store(&f)
	if c.wmu.TryLock() {
		c.flushGoAway()
		c.wmu.Unlock()
	}
	c.drain.Store(time.AfterFunc(drainMax, func() { _ = c.Conn.Close() }))
}

// flushGoAway writes a waiting GOAWAY if the server's output is between
// frames. The caller holds wmu.
func (c *conn) flushGoAway() {
	if c.dead || !c.out.atBoundary() {
		return
	}
	if f := c.goAway.Swap(nil); f != nil {
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Conn.Write(*f)
		_ = c.SetWriteDeadline(time.Time{})
		c.sentGoAway, c.sentLast = true, binary.BigEndian.Uint32((*f)[frameHeaderLen:])
	}
}

// lowerGoAway lowers the last stream id of a GOAWAY grpc-go writes after
// the edge's to the edge's, byte by byte as the bytes pass (the id may
// be split between writes). The caller holds wmu.
func (c *conn) lowerGoAway(_ frameHeader, off uint32, b []byte) {
	var last [4]byte
	binary.BigEndian.PutUint32(last[:], c.sentLast)
	for i := range b {
		k := off + uint32(i)
		if k >= 4 {
			return
		}
		if k == 0 {
			c.cmp = 0
		}
		if c.cmp == 0 {
			switch {
			case b[i] < last[k]:
				c.cmp = -1
			case b[i] > last[k]:
				c.cmp = 1
			}
		}
		if c.cmp > 0 {
			b[i] = last[k]
		}
	}
}

// mark records that stream opened now, unless the newest mark is recent
// enough to stand for it.
func (c *conn) mark(stream uint32) {
	now := time.Since(c.born)
	if c.nmarks > 0 && now-c.marks[c.head].at < c.l.opts.EarlyResetWindow/(marksLen-1) {
		return
	}
	c.head = (c.head + 1) % marksLen
	c.marks[c.head] = mark{stream: stream, at: now}
	c.nmarks = min(c.nmarks+1, marksLen)
}

// isEarly reports whether stream opened less than EarlyResetWindow ago.
// The newest mark at or below the stream is no later than its opening,
// so a reset judged early is early; one opened just after a mark may be
// judged late (by at most a sixteenth of the window).
func (c *conn) isEarly(stream uint32) bool {
	now := time.Since(c.born)
	for i := range c.nmarks {
		m := c.marks[(c.head-i+marksLen)%marksLen]
		if m.stream <= stream {
			return now-m.at < c.l.opts.EarlyResetWindow
		}
	}
	return false
}

// trip closes a connection that ignored its GOAWAY (sending it first if
// it is still waiting and can go now).
func (c *conn) trip() {
	c.tripped = true
	if m := c.l.opts.Metrics; m != nil {
		m.closed.WithLabelValues(CloseStreamResets).Inc()
	}
	c.l.coolDown(c.RemoteAddr())
	if c.wmu.TryLock() {
		c.flushGoAway()
		c.dead = true
		c.wmu.Unlock()
	}
	_ = c.Conn.Close()
}

// Write writes grpc-go's bytes, each write bounded by WriteTimeout.
func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return 0, net.ErrClosed
	}
	if wt := c.l.opts.WriteTimeout; wt > 0 {
		if err := c.SetWriteDeadline(time.Now().Add(wt)); err != nil {
			return 0, err
		}
	}
	if c.sentGoAway {
		// Rare (after the edge's GOAWAY): scan a copy first, so a
		// GOAWAY's id can be lowered before it is written; io.Writer
		// forbids changing p.
		q := append([]byte(nil), p...)
		c.out.scan(q, c.onOut)
		n, err := c.Conn.Write(q)
		return c.wrote(n, err)
	}
	n, err := c.Conn.Write(p)
	c.out.scan(p[:n], c.onOut)
	return c.wrote(n, err)
}

// wrote finishes a Write of n bytes: the flow-control watch, a waiting
// GOAWAY, the write timeout. The caller holds wmu.
func (c *conn) wrote(n int, err error) (int, error) {
	c.checkWindow()
	if err == nil && c.goAway.Load() != nil {
		c.flushGoAway()
		if wt := c.l.opts.WriteTimeout; wt > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(wt))
		}
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.dead = true
		c.closeFor(CloseWriteTimeout)
	}
	return n, err
}

// Close closes the connection and frees its place under the cap.
func (c *conn) Close() error {
	c.closed.Store(true)
	if t := c.drain.Load(); t != nil {
		t.Stop()
	}
	c.stallMu.Lock()
	if c.stall != nil {
		c.stall.Stop()
	}
	c.stallMu.Unlock()
	err := c.Conn.Close()
	c.once.Do(c.l.release)
	return err
}
