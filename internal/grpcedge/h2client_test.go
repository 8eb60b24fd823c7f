package grpcedge_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Client speaks raw HTTP/2 to a gRPC server, frame by frame, the way an
// attacker's tool does: golang.org/x/net/http2's Framer and hpack, no
// client-side flow control, limits or politeness.
type h2Client struct {
	t    testing.TB
	conn net.Conn
	fr   *http2.Framer
	wmu  sync.Mutex
	hbuf bytes.Buffer
	henc *hpack.Encoder
	next uint32

	// Filled by the reader goroutine, when started.
	mu       sync.Mutex
	goAway   *http2.GoAwayFrame
	closed   bool
	pingAcks int
	done     chan struct{} // closed when the reader returns; nil if none
}

// dialH2 connects and sends the preface and SETTINGS (settings may add to
// them). It does not read unless startReader is called.
func dialH2(t testing.TB, addr string, settings ...http2.Setting) *h2Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &h2Client{t: t, conn: conn, next: 1}
	c.fr = http2.NewFramer(conn, conn)
	c.henc = hpack.NewEncoder(&c.hbuf)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); c.waitReader() })
	return c
}

// startReader reads every frame the server sends, acks its SETTINGS, and
// records GOAWAY, PING acks and the end of the connection.
func (c *h2Client) startReader() {
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				c.mu.Lock()
				c.closed = true
				c.mu.Unlock()
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					c.wmu.Lock()
					_ = c.fr.WriteSettingsAck()
					c.wmu.Unlock()
				}
			case *http2.GoAwayFrame:
				c.mu.Lock()
				c.goAway = &http2.GoAwayFrame{LastStreamID: f.LastStreamID, ErrCode: f.ErrCode}
				c.mu.Unlock()
			case *http2.PingFrame:
				if f.IsAck() {
					c.mu.Lock()
					c.pingAcks++
					c.mu.Unlock()
				}
			}
		}
	}()
}

func (c *h2Client) waitReader() {
	if c.done != nil {
		<-c.done // the connection is closed: the read fails
	}
}

// headers opens the next stream for method; endStream ends it at once.
func (c *h2Client) headers(method string, endStream bool) (uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "edge.test"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = c.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	id := c.next
	c.next += 2
	return id, c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true, EndStream: endStream})
}

// request sends a whole unary request with an empty message.
func (c *h2Client) request(method string) (uint32, error) {
	id, err := c.headers(method, false)
	if err != nil {
		return id, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return id, c.fr.WriteData(id, true, []byte{0, 0, 0, 0, 0})
}

func (c *h2Client) reset(id uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
}

func (c *h2Client) ping() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.fr.WritePing(false, [8]byte{1})
}

func (c *h2Client) windowUpdate(n uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.fr.WriteWindowUpdate(0, n)
}

// state returns what the reader saw.
func (c *h2Client) state() (goAway *http2.GoAwayFrame, closed bool, pingAcks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goAway, c.closed, c.pingAcks
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// closedByServer reports whether the server closed c: a read returns EOF
// or a reset within d.
func closedByServer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c) // the server's SETTINGS, then the end
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}
