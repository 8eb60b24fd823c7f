package ratelimit

import "strconv"

// AppendKey appends the store key of one descriptor's window to dst.
//
// The encoding is length-prefixed: every variable part is written as its
// byte length, ':' and the bytes. A value holding any separator therefore
// cannot make two distinct descriptors share a key, which is the collision
// envoyproxy/ratelimit's "key_value_" keys have ("a_b"="c" vs "a"="b_c").
// The unit and the window start end the key, so a window is counted apart
// from every other window and from a limit with another unit.
//
//	prefix 6:domain 4:user 5:alice | 60 | 1700000040
//
// shared, when not nil, replaces entry values by index (share_threshold):
// every value a share_threshold wildcard matches counts in one counter.
func AppendKey(dst []byte, prefix, domain string, entries []Entry, shared []string, unit Unit, windowStart int64) []byte {
	dst = append(dst, prefix...)
	dst = appendDescriptor(dst, domain, entries, shared)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, unit.Seconds(), 10)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, windowStart, 10)
	return dst
}

// AppendWindowKey appends the store key of one window of a decision Op
// (several limits on a descriptor, or a smooth algorithm) to dst.
//
// It is AppendKey's encoding behind a Redis Cluster hash tag made of a
// hash of the descriptor, so that every window of one descriptor lands in
// one slot and one script can decide them atomically; the tag only picks
// the slot, the length-prefixed rest keeps keys apart. The algorithm is
// in the key, so a domain that changes algorithm never reads another's
// state; windowStart is only for FixedWindow (0 otherwise: the smooth
// algorithms keep their time in the value).
//
//	prefix {9f86d081884c7d65} 6:domain 4:user 5:alice | s60 | 0
func AppendWindowKey(dst []byte, prefix, domain string, entries []Entry, shared []string, alg Algorithm, unit Unit, windowStart int64) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, '{')
	tag := len(dst)
	dst = append(dst, "0000000000000000}"...)
	body := len(dst)
	dst = appendDescriptor(dst, domain, entries, shared)
	h := fnv64a(dst[body:])
	const hexDigits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		dst[tag+i] = hexDigits[h&0xf]
		h >>= 4
	}
	dst = append(dst, '|', algorithmLetter(alg))
	dst = strconv.AppendInt(dst, unit.Seconds(), 10)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, windowStart, 10)
	return dst
}

func fnv64a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// appendDescriptor appends the length-prefixed domain and entries.
func appendDescriptor(dst []byte, domain string, entries []Entry, shared []string) []byte {
	dst = appendPart(dst, domain)
	for i, e := range entries {
		dst = appendPart(dst, e.Key)
		v := e.Value
		if i < len(shared) && shared[i] != "" {
			// Written like any value, so that a request whose value spells
			// the wildcard ("x*" itself, which reaches the same descriptor
			// by exact match, unshared) counts in the shared counter as in
			// envoyproxy/ratelimit, instead of getting a budget of its own.
			v = shared[i]
		}
		dst = appendPart(dst, v)
	}
	return dst
}

func appendPart(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// WindowStart is the start of the fixed window of unit that holds now (Unix
// seconds), aligned like envoyproxy/ratelimit: now truncated to the unit.
func WindowStart(now int64, unit Unit) int64 {
	d := unit.Seconds()
	return now / d * d
}

func algorithmLetter(a Algorithm) byte {
	switch a {
	case SlidingWindow:
		return 's'
	case GCRA:
		return 'g'
	}
	return 'f'
}
