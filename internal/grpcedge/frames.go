package grpcedge

import "encoding/binary"

// HTTP/2 (RFC 9113) framing: what the scanner needs.
const (
	frameHeaderLen = 9
	// clientPrefaceLen is len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"): the
	// client sends it before its first frame.
	clientPrefaceLen = 24

	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8

	flagAck = 0x1

	settingInitialWindowSize = 0x4
	// initialWindow is HTTP/2's initial flow-control window, of every
	// stream and of the connection.
	initialWindow = 65535

	errCodeEnhanceYourCalm = 0xb
)

// frameHeader is a parsed 9-byte frame header.
type frameHeader struct {
	length uint32
	typ    byte
	flags  byte
	stream uint32
}

// frameScanner follows frame boundaries in a byte stream that arrives in
// arbitrary pieces. It reads only the 9-byte headers and skips payloads,
// so its cost is a few instructions per frame and per call.
type frameScanner struct {
	preface int // preface bytes still to skip
	hdr     [frameHeaderLen]byte
	nhdr    int    // header bytes collected
	skip    uint32 // payload bytes of the current frame still to come

	// onPayload, when set, gets the payload of the frames wantPayload
	// accepts, in records of the size it returns (0: skip the payload),
	// each as soon as it is complete: a SETTINGS frame entry by entry,
	// however many entries it has, with at most one record buffered. A
	// partial record at the frame's end is dropped (the peer rejects
	// such a frame).
	wantPayload func(frameHeader) int
	onPayload   func(frameHeader, []byte)
	cur         frameHeader
	record      int
	// onBytes, when set, gets the payload bytes of the frames wantBytes
	// accepts as they pass, with their offset in the frame's payload; it
	// may change them.
	wantBytes func(frameHeader) bool
	onBytes   func(h frameHeader, off uint32, b []byte)
	bytesOf   frameHeader
	passing   bool
	payload   []byte
	capturing bool
}

// Record sizes of the payloads the read side reads.
const (
	settingLen      = 6
	windowUpdateLen = 4
)

// controlPayload selects the payloads the read side needs: each entry of
// the client's SETTINGS (of any length: a frame of many entries must not
// hide a setting), and the increment of its connection-level
// WINDOW_UPDATEs.
func controlPayload(h frameHeader) int {
	switch {
	case h.stream != 0:
		return 0
	case h.typ == frameSettings && h.flags&flagAck == 0:
		return settingLen
	case h.typ == frameWindowUpdate && h.length == windowUpdateLen:
		return windowUpdateLen
	}
	return 0
}

// atBoundary reports whether the stream seen so far ends between frames.
func (s *frameScanner) atBoundary() bool { return s.preface == 0 && s.nhdr == 0 && s.skip == 0 }

// scan consumes p, calling onFrame for each complete frame header. When
// onFrame returns false, scan stops and returns the offset in p where that
// frame's header began (0 when it began in an earlier piece) and false.
func (s *frameScanner) scan(p []byte, onFrame func(frameHeader) bool) (int, bool) {
	i := 0
	for i < len(p) {
		if s.preface > 0 {
			n := min(s.preface, len(p)-i)
			s.preface -= n
			i += n
			continue
		}
		if s.skip > 0 {
			n := int(min(s.skip, uint32(len(p)-i)))
			if s.passing {
				s.onBytes(s.bytesOf, s.bytesOf.length-s.skip, p[i:i+n])
			}
			if s.capturing {
				n = min(n, s.record-len(s.payload))
				s.payload = append(s.payload, p[i:i+n]...)
				if len(s.payload) == s.record {
					s.onPayload(s.cur, s.payload)
					s.payload = s.payload[:0]
				}
			}
			s.skip -= uint32(n)
			i += n
			if s.skip == 0 {
				s.capturing, s.passing = false, false
			}
			continue
		}
		start := i - s.nhdr
		n := copy(s.hdr[s.nhdr:], p[i:])
		s.nhdr += n
		i += n
		if s.nhdr < frameHeaderLen {
			break
		}
		s.nhdr = 0
		h := frameHeader{
			length: uint32(s.hdr[0])<<16 | uint32(s.hdr[1])<<8 | uint32(s.hdr[2]),
			typ:    s.hdr[3],
			flags:  s.hdr[4],
			stream: binary.BigEndian.Uint32(s.hdr[5:9]) & (1<<31 - 1),
		}
		s.skip = h.length
		if !onFrame(h) {
			return max(start, 0), false
		}
		if s.onBytes != nil && h.length > 0 && s.wantBytes(h) {
			s.bytesOf, s.passing = h, true
		}
		if s.onPayload != nil && h.length > 0 {
			if r := s.wantPayload(h); r > 0 {
				s.cur, s.record, s.payload, s.capturing = h, r, s.payload[:0], true
			}
		}
	}
	return len(p), true
}

// initialWindowSetting returns the SETTINGS_INITIAL_WINDOW_SIZE in
// SETTINGS entries, the last one if repeated.
func initialWindowSetting(p []byte) (uint32, bool) {
	v, ok := uint32(0), false
	for ; len(p) >= 6; p = p[6:] {
		if binary.BigEndian.Uint16(p) == settingInitialWindowSize {
			v, ok = binary.BigEndian.Uint32(p[2:]), true
		}
	}
	return v, ok
}

// goAwayFrame is a GOAWAY with the given last stream id and error code and
// a short debug text.
func goAwayFrame(lastStream uint32, code uint32, debug string) []byte {
	b := make([]byte, frameHeaderLen+8+len(debug))
	n := 8 + len(debug)
	b[0], b[1], b[2] = byte(n>>16), byte(n>>8), byte(n)
	b[3] = frameGoAway
	binary.BigEndian.PutUint32(b[9:], lastStream&(1<<31-1))
	binary.BigEndian.PutUint32(b[13:], code)
	copy(b[17:], debug)
	return b
}
