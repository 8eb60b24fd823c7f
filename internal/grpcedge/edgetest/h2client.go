// Package edgetest is a raw HTTP/2 client for tests of the gRPC edge: it
// writes frames the way an attacker's tool does (golang.org/x/net/http2's
// Framer and hpack), with no flow control, limits or politeness.
package edgetest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Client speaks raw HTTP/2 to a gRPC server, frame by frame.
type Client struct {
	conn net.Conn
	fr   *http2.Framer
	wmu  sync.Mutex // guards fr's writes, hbuf, henc, next
	hbuf bytes.Buffer
	henc *hpack.Encoder
	next uint32

	// Filled by the reader goroutine, when started.
	mu       sync.Mutex
	goAway   *http2.GoAwayFrame
	goAways  []uint32 // the last stream ids of every GOAWAY, in order
	closed   bool
	pingAcks int
	ends     int           // END_STREAM flags the server sent
	done     chan struct{} // closed when the reader returns; nil if none
}

// Dial connects, sends the preface and SETTINGS (settings may add to
// them), and closes the connection when the test ends. It does not read
// unless StartReader is called.
func Dial(t testing.TB, addr string, settings ...http2.Setting) *Client {
	t.Helper()
	c, err := Connect(addr, settings...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Connect is Dial for use outside the test goroutine: the caller closes.
func Connect(addr string, settings ...http2.Setting) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, next: 1}
	c.fr = http2.NewFramer(conn, conn)
	c.henc = hpack.NewEncoder(&c.hbuf)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the connection and waits for the reader, if any.
func (c *Client) Close() {
	_ = c.conn.Close()
	if c.done != nil {
		<-c.done // the connection is closed: the read fails
	}
}

// StartReader reads every frame the server sends, acks its SETTINGS and
// PINGs, and records GOAWAY, PING acks, ended streams and the end of the
// connection.
func (c *Client) StartReader() {
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
			c.mu.Lock()
			if f.Header().Flags.Has(http2.FlagHeadersEndStream) && (f.Header().Type == http2.FrameHeaders || f.Header().Type == http2.FrameData) {
				c.ends++
			}
			c.mu.Unlock()
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
				c.goAways = append(c.goAways, f.LastStreamID)
				c.mu.Unlock()
			case *http2.PingFrame:
				if f.IsAck() {
					c.mu.Lock()
					c.pingAcks++
					c.mu.Unlock()
				} else {
					c.wmu.Lock()
					_ = c.fr.WritePing(true, f.Data)
					c.wmu.Unlock()
				}
			}
		}
	}()
}

// GoAways returns the last stream id of every GOAWAY received, in order.
func (c *Client) GoAways() []uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint32(nil), c.goAways...)
}

// Headers opens the next stream for method; endStream ends it at once.
func (c *Client) Headers(method string, endStream bool) (uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.headersLocked(method, endStream)
}

func (c *Client) headersLocked(method string, endStream bool) (uint32, error) {
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "edge.test"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = c.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	id := c.next
	c.next += 2
	return id, c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true, EndStream: endStream})
}

// Request sends a whole unary request with an empty message.
func (c *Client) Request(method string) (uint32, error) {
	return c.RequestMsg(method, nil)
}

// RequestMsg sends a whole unary request with msg (serialized) as its one
// gRPC message.
func (c *Client) RequestMsg(method string, msg []byte) (uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	id, err := c.headersLocked(method, false)
	if err != nil {
		return id, err
	}
	data := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(data[1:], uint32(len(msg)))
	copy(data[5:], msg)
	for len(data) > 0 {
		n := min(len(data), 16384) // the default SETTINGS_MAX_FRAME_SIZE
		if err := c.fr.WriteData(id, n == len(data), data[:n]); err != nil {
			return id, err
		}
		data = data[n:]
	}
	return id, nil
}

// Message sends msg as stream id's one gRPC message and ends the stream.
func (c *Client) Message(id uint32, msg []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	data := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(data[1:], uint32(len(msg)))
	copy(data[5:], msg)
	return c.fr.WriteData(id, true, data)
}

// Reset cancels a stream.
func (c *Client) Reset(id uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
}

// Ping sends a PING.
func (c *Client) Ping() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.fr.WritePing(false, [8]byte{1})
}

// WindowUpdate grows the connection's flow-control window by n.
func (c *Client) WindowUpdate(n uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.fr.WriteWindowUpdate(0, n)
}

// State returns what the reader saw.
func (c *Client) State() (goAway *http2.GoAwayFrame, closed bool, pingAcks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goAway, c.closed, c.pingAcks
}

// Ended is the number of streams the server has ended (END_STREAM seen).
func (c *Client) Ended() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ends
}

// WaitFor polls cond until it holds or d passes.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// ClosedByServer reports whether the server closed c within d: reading
// (the server's SETTINGS, if any) ends in EOF or a reset, not a timeout.
func ClosedByServer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}
