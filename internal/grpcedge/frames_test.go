package grpcedge

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"golang.org/x/net/http2"
)

// framesOf scans b in pieces of the given sizes (cycled) and returns every
// header seen, and the payloads of the control frames the read side reads.
func framesOf(b []byte, preface int, pieces []int) ([]frameHeader, []string) {
	s := frameScanner{preface: preface}
	var got []frameHeader
	var payloads []string
	s.wantPayload = controlPayload
	s.onPayload = func(h frameHeader, p []byte) { payloads = append(payloads, fmt.Sprintf("%d:%x", h.typ, p)) }
	on := func(h frameHeader) bool { got = append(got, h); return true }
	for i, k := 0, 0; i < len(b); k++ {
		n := len(b) - i
		if len(pieces) > 0 {
			n = min(max(pieces[k%len(pieces)], 1), n)
		}
		s.scan(b[i:i+n], on)
		i += n
	}
	return got, payloads
}

// TestFrameScanner: the scanner finds the frames golang.org/x/net/http2
// writes, whatever pieces the bytes arrive in.
func TestFrameScanner(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&buf, nil)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	_ = fr.WriteWindowUpdate(0, 1000)
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte("abc"), EndHeaders: true})
	_ = fr.WriteData(1, true, bytes.Repeat([]byte("d"), 40000))
	_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: nil, EndHeaders: true, EndStream: true})
	_ = fr.WriteGoAway(3, http2.ErrCodeNo, nil)
	want := []frameHeader{
		{length: 6, typ: 0x4},
		{length: 4, typ: frameWindowUpdate},
		{length: 3, typ: frameHeaders, flags: 0x4, stream: 1},
		{length: 40000, typ: 0x0, flags: 0x1, stream: 1},
		{length: 4, typ: frameRSTStream, stream: 1},
		{length: 0, typ: frameHeaders, flags: 0x5, stream: 3},
		{length: 8, typ: frameGoAway},
	}
	tests := []struct {
		name   string
		pieces []int
	}{
		{name: "whole"},
		{name: "byte by byte", pieces: []int{1}},
		{name: "odd pieces", pieces: []int{7, 3, 11, 2, 100}},
		{name: "header split", pieces: []int{24 + 4, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, payloads := framesOf(buf.Bytes(), clientPrefaceLen, tt.pieces)
			if !slices.Equal(got, want) {
				t.Errorf("frames = %+v\nwant %+v", got, want)
			}
			if wantP := []string{"4:000400100000", "8:000003e8"}; !slices.Equal(payloads, wantP) {
				t.Errorf("payloads = %q, want %q", payloads, wantP)
			}
		})
	}
}

// TestFrameScannerLongSettings: every entry of a SETTINGS frame is read,
// however many there are and however the bytes arrive, one entry at a
// time; the last one here is the window the read side must see.
func TestFrameScannerLongSettings(t *testing.T) {
	for _, n := range []int{1, 64, 65, 2730} { // 2730 entries: a 16 KiB frame
		var buf bytes.Buffer
		fr := http2.NewFramer(&buf, nil)
		settings := make([]http2.Setting, n)
		for i := range settings[:n-1] {
			settings[i] = http2.Setting{ID: http2.SettingID(0x100 + i), Val: 1}
		}
		settings[n-1] = http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}
		_ = fr.WriteSettings(settings...)
		_ = fr.WriteWindowUpdate(0, 1000)
		for _, pieces := range [][]int{nil, {1}, {5, 7}, {4096}} {
			_, payloads := framesOf(buf.Bytes(), 0, pieces)
			if len(payloads) != n+1 {
				t.Fatalf("%d settings in pieces %v: %d payloads, want %d", n, pieces, len(payloads), n+1)
			}
			if got, want := payloads[n-1], "4:000400000000"; got != want {
				t.Errorf("%d settings in pieces %v: last entry %q, want %q", n, pieces, got, want)
			}
			if got, want := payloads[n], "8:000003e8"; got != want {
				t.Errorf("%d settings in pieces %v: window update %q, want %q", n, pieces, got, want)
			}
		}
	}
}

// TestFrameScannerStop: stopping returns where the stopping frame's
// header began in this piece, or 0 when it began in an earlier one.
func TestFrameScannerStop(t *testing.T) {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte("ab"), EndHeaders: true})
	_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	b := buf.Bytes()
	stopAtRST := func(h frameHeader) bool { return h.typ != frameRSTStream }
	s := frameScanner{}
	if n, ok := s.scan(b, stopAtRST); ok || n != 11 {
		t.Errorf("whole: scan = %d, %v; want 11, false", n, ok)
	}
	s = frameScanner{}
	if n, ok := s.scan(b[:14], stopAtRST); !ok || n != 14 {
		t.Errorf("first piece: scan = %d, %v; want 14, true", n, ok)
	}
	if n, ok := s.scan(b[14:], stopAtRST); ok || n != 0 {
		t.Errorf("second piece: scan = %d, %v; want 0, false", n, ok)
	}
}

// FuzzFrameScanner: scanning in any pieces finds the same frames as
// scanning at once, and never panics.
func FuzzFrameScanner(f *testing.F) {
	f.Add([]byte(http2.ClientPreface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"), uint8(3))
	f.Add([]byte("\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x08"), uint8(1))
	f.Add([]byte(http2.ClientPreface+"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x01\x00\x00"), uint8(7))
	f.Fuzz(func(t *testing.T, b []byte, piece uint8) {
		whole, wp := framesOf(b, clientPrefaceLen, nil)
		split, sp := framesOf(b, clientPrefaceLen, []int{int(piece%13) + 1, int(piece%5) + 1})
		if !slices.Equal(whole, split) || !slices.Equal(wp, sp) {
			t.Fatalf("whole %+v %q, split %+v %q", whole, wp, split, sp)
		}
		for _, p := range wp {
			if len(p) > 2+2*settingLen {
				t.Fatalf("captured a %d-byte payload", len(p))
			}
		}
	})
}

// TestCapFor: the cap leaves the reserve free under the descriptor limit.
func TestCapFor(t *testing.T) {
	tests := []struct {
		name          string
		want, reserve int
		nofile        uint64
		wantCap       int
		wantErr       bool
	}{
		{name: "configured under the limit", want: 4096, reserve: 256, nofile: 1 << 20, wantCap: 4096},
		{name: "lowered to leave the reserve", want: 4096, reserve: 256, nofile: 1024, wantCap: 768},
		{name: "no configured cap: the room", want: 0, reserve: 256, nofile: 1024, wantCap: 768},
		{name: "no room", want: 10, reserve: 256, nofile: 256, wantErr: true},
		{name: "huge limit", want: 0, reserve: 256, nofile: 1 << 62, wantCap: 1<<31 - 256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capFor(tt.want, tt.reserve, tt.nofile)
			if (err != nil) != tt.wantErr || got != tt.wantCap {
				t.Errorf("capFor = %d, %v; want %d, error %v", got, err, tt.wantCap, tt.wantErr)
			}
		})
	}
}

// TestLowerGoAway: after the edge's GOAWAY, the last stream id of every
// later GOAWAY comes out no higher than the edge's, whatever pieces it is
// written in; a lower one is kept, and nothing else is changed.
func TestLowerGoAway(t *testing.T) {
	const sent = 0x0102f0
	tests := []struct {
		name       string
		give, want uint32
	}{
		{name: "grpc-go's heads-up", give: 1<<31 - 1, want: sent},
		{name: "higher in the last byte only", give: 0x0102f1, want: sent},
		{name: "equal", give: sent, want: sent},
		{name: "lower in the last byte", give: 0x0102ef, want: 0x0102ef},
		{name: "lower in an early byte, higher later", give: 0x0101ff, want: 0x0101ff},
		{name: "higher in an early byte, lower later", give: 0x010300, want: sent},
		{name: "zero", give: 0, want: 0},
	}
	for _, tt := range tests {
		for _, pieces := range [][]int{nil, {1}, {10, 1, 2}, {11}} {
			var buf bytes.Buffer
			fr := http2.NewFramer(&buf, nil)
			_ = fr.WriteData(1, false, []byte("\x00\x00\x00\x05abcde"))
			_ = fr.WriteGoAway(tt.give, http2.ErrCodeNo, []byte("max_age"))
			_ = fr.WritePing(false, [8]byte{0xff, 0xff, 0xff, 0xff})
			b := buf.Bytes()
			before := append([]byte(nil), b...)
			c := &conn{sentGoAway: true, sentLast: sent}
			s := frameScanner{wantBytes: func(h frameHeader) bool { return h.typ == frameGoAway }, onBytes: c.lowerGoAway}
			for i, k := 0, 0; i < len(b); k++ {
				n := len(b) - i
				if len(pieces) > 0 {
					n = min(pieces[k%len(pieces)], n)
				}
				s.scan(b[i:i+n], func(frameHeader) bool { return true })
				i += n
			}
			goAwayID := 9 + 9 + 9 // after the DATA frame (9-byte payload) and the GOAWAY header
			if got := binary.BigEndian.Uint32(b[goAwayID:]); got != tt.want {
				t.Errorf("%s in pieces %v: last stream %#x, want %#x", tt.name, pieces, got, tt.want)
			}
			copy(b[goAwayID:], before[goAwayID:goAwayID+4])
			if !bytes.Equal(b, before) {
				t.Errorf("%s in pieces %v: bytes other than the id changed", tt.name, pieces)
			}
		}
	}
}
