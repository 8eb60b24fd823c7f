package server

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// rawHTTP opens a TCP connection to the HTTP ext_authz listener.
func rawHTTP(t *testing.T, h *harness) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.svc.httpLis.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestHTTPSlowBodyIsCut: a check with a body the client trickles in. The
// handler answers without reading it; net/http then reads up to 256 KiB
// of the rest to reuse the connection, and without a whole-request read
// deadline that read waited as long as the client kept sending a byte
// now and then: one connection (and goroutine, and a place under
// max_connections) per attacker connection, for ever. Envoy sends a
// check's body with its headers, so the whole request must arrive within
// read_header_timeout.
func TestHTTPSlowBodyIsCut(t *testing.T) {
	const rht = 300 * time.Millisecond
	h := start(t, httpConfig(t, "    read_header_timeout: 300ms\n"))
	for _, tt := range []struct{ name, head, chunk string }{
		{name: "chunked", head: "Transfer-Encoding: chunked\r\n", chunk: "1\r\na\r\n"},
		{name: "content-length", head: "Content-Length: 100000\r\n", chunk: "a"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := rawHTTP(t, h)
			if _, err := c.Write([]byte("POST /authz/api/x HTTP/1.1\r\nHost: shop.example.com\r\n" + tt.head + "\r\n" + tt.chunk)); err != nil {
				t.Fatal(err)
			}
			// Keep trickling; the server must cut the connection soon
			// after the deadline (it may answer first).
			began := time.Now()
			buf := make([]byte, 4096)
			for time.Since(began) < rht+3*time.Second {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte(tt.chunk)); err != nil {
					t.Logf("cut after %v", time.Since(began).Round(time.Millisecond))
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if _, err := c.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Logf("cut after %v: %v", time.Since(began).Round(time.Millisecond), err)
					return
				}
			}
			t.Fatalf("connection still open %v into the trickle", time.Since(began).Round(time.Millisecond))
		})
	}
}
