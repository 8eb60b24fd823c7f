package tokens

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// The keys file is read line by line when it keeps to the plain form a
// generator writes (and the example in APIKeyFile shows):
//
//	keys:
//	  - subject: ci-bot
//	    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	    app_id: ci
//	    scopes: [deploy, "read"]
//	    claims: {team: platform, tier: 'gold'}
//
// that is: a top-level "keys:" and nothing else at the top; each key a
// block mapping of the five known fields, one per line, at one consistent
// indentation; values plain (ASCII letters, digits and _ . / @ + -, not
// null), or quoted on one line without escapes; scopes a one-line flow
// sequence of such values or a block sequence below the field ("- read"
// a line); claims a one-line flow mapping or a block mapping below the
// field ("team: payments" a line) whose values are strings. Blank lines
// and comment lines (any printable text) are fine. Such a file is read
// with a fixed-size buffer and no YAML node tree, and decodes to exactly
// what yaml.v3 makes of it (TestAPIKeyFastMatchesYAML, TestAPIKeyValues
// and FuzzAPIKeyFile hold the two equal).
//
// Anything else YAML allows (other indentation, anchors, multi-line or
// escaped strings, ${NAME} references, text beyond ASCII outside comment
// lines, a field the file format does not have) stops the line reader,
// and the file is decoded by yamlfile as a whole, with yamlfile's
// messages: the fast path only ever says "not mine", never "invalid".

// errNotPlain is the fast path's "not mine".
var errNotPlain = errors.New("not in the plain keys format")

// rawKey is one parsed key, valid until the next one is parsed: its
// scopes and claims are reused for the next key (the builder copies the
// ones it keeps).
type rawKey struct {
	line        int // of the item's first field (yaml.v3's line of the mapping)
	subjectLine int // 0 when absent
	sha256Line  int
	subject     string
	digest      keyDigest
	appID       string
	scopes      []string // nil when absent
	claims      map[string]any
	hasSubject  bool
	hasSHA256   bool
	hasAppID    bool
	hasScopes   bool
	hasClaims   bool
	in          *interner
	// block is 's' or 'c' while scopes or claims are read as a block
	// sequence or mapping on the lines below their field; blockIndent is
	// the indentation of its entries (-1 before the first).
	block       byte
	blockIndent int
}

// interner shares the strings that keys repeat (app ids, scopes, claims)
// and holds the scratch scopes and claims, so a key costs no allocation
// beyond its subject.
type interner struct {
	strs   map[string]string
	scopes []string
	claims map[string]any
}

// maxInterned bounds the strings an interner shares: past it, strings
// are allocated as they come (a file whose app ids are all different).
const maxInterned = 4096

func (in *interner) str(b []byte) string {
	if s, ok := in.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in.strs) < maxInterned {
		in.strs[s] = s
	}
	return s
}

// maxPlainLine bounds one line of the plain format (a longer line is
// left to YAML).
const maxPlainLine = 64 << 10

// readPlainKeys reads r in the plain format and calls emit for each key
// in file order. It returns errNotPlain for a file outside the format.
func readPlainKeys(r io.Reader, emit func(k *rawKey)) error {
	br := bufio.NewReaderSize(r, maxPlainLine)
	var (
		lineNo     int
		sawKeys    bool
		itemIndent = -1
		fieldCol   = -1
		cur        rawKey
		inItem     bool
		in         = interner{strs: map[string]string{}, scopes: []string{}, claims: map[string]any{}}
	)
	flush := func() {
		if inItem {
			emit(&cur)
		}
		cur = rawKey{in: &in, blockIndent: -1}
		inItem = false
	}
	cur.in, cur.blockIndent = &in, -1
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return errNotPlain
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if len(line) == 0 && err != nil {
			break
		}
		lineNo++
		line = bytes.TrimSuffix(line, []byte("\n"))
		indent := 0
		for indent < len(line) && line[indent] == ' ' {
			indent++
		}
		rest := line[indent:]
		if !plainASCII(line) && (len(rest) == 0 || rest[0] != '#' || !yamlPrintable(rest)) {
			return errNotPlain // text beyond ASCII only in a comment line
		}
		if len(rest) == 0 || rest[0] == '#' {
			if err != nil {
				break
			}
			continue // blank or comment
		}
		if cur.block != 0 {
			if indent > fieldCol {
				if cur.blockIndent < 0 {
					cur.blockIndent = indent
				}
				if indent != cur.blockIndent || !parseBlockEntry(&cur, rest) {
					return errNotPlain
				}
				if err != nil {
					break
				}
				continue
			}
			if cur.blockIndent < 0 {
				return errNotPlain // "scopes:" with no value: null
			}
			cur.block = 0
		}
		switch {
		case !sawKeys:
			if indent != 0 || !isKeysLine(rest) {
				return errNotPlain
			}
			sawKeys = true
		case len(rest) >= 2 && rest[0] == '-' && rest[1] == ' ':
			if itemIndent < 0 {
				itemIndent = indent
			}
			if indent != itemIndent {
				return errNotPlain
			}
			flush()
			col := indent + 1
			for col < len(line) && line[col] == ' ' {
				col++
			}
			if col == len(line) || line[col] == '#' {
				return errNotPlain // "-" alone: a block item on the next lines
			}
			if fieldCol >= 0 && col != fieldCol {
				return errNotPlain
			}
			fieldCol = col
			inItem = true
			cur.line = lineNo
			if !parseField(&cur, line[col:], lineNo) {
				return errNotPlain
			}
		case inItem && indent == fieldCol:
			if !parseField(&cur, rest, lineNo) {
				return errNotPlain
			}
		default:
			return errNotPlain
		}
		if err != nil {
			break
		}
	}
	if !sawKeys || (cur.block != 0 && cur.blockIndent < 0) {
		return errNotPlain // empty, only comments, or a null at the end: let YAML say
	}
	flush()
	return nil
}

// plainASCII: printable ASCII only (no tabs, CR, control or non-ASCII
// bytes, each of which YAML treats in its own way).
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func isKeysLine(b []byte) bool {
	rest, ok := bytes.CutPrefix(b, []byte("keys:"))
	return ok && isLineEnd(rest)
}

// isLineEnd: nothing but spaces and a comment (after at least one space).
func isLineEnd(b []byte) bool {
	t := bytes.TrimLeft(b, " ")
	return len(t) == 0 || (t[0] == '#' && len(t) < len(b))
}

// parseField parses "name: value" (the whole rest of the line) into k.
func parseField(k *rawKey, b []byte, line int) bool {
	name, val, ok := bytes.Cut(b, []byte(":"))
	if !ok || len(val) > 0 && val[0] != ' ' {
		return false
	}
	block := isLineEnd(val) // "scopes:" or "claims:", entries below
	val = bytes.TrimLeft(val, " ")
	var end []byte
	switch string(name) {
	case "subject":
		if k.hasSubject {
			return false
		}
		k.subject, end, ok = scalar(val)
		k.hasSubject, k.subjectLine = true, line
	case "sha256":
		if k.hasSHA256 {
			return false
		}
		var v []byte
		v, end, ok = scalarBytes(val)
		k.digest = decodeDigest(v)
		k.hasSHA256, k.sha256Line = true, line
	case "app_id":
		if k.hasAppID {
			return false
		}
		var v []byte
		v, end, ok = scalarBytes(val)
		k.appID = k.in.str(v)
		k.hasAppID = true
	case "scopes":
		if k.hasScopes {
			return false
		}
		k.hasScopes = true
		if block {
			k.scopes, k.block = k.in.scopes[:0], 's'
			return true
		}
		k.scopes, end, ok = flowSeq(k.in, val)
	case "claims":
		if k.hasClaims {
			return false
		}
		k.hasClaims = true
		if block {
			clear(k.in.claims)
			k.claims, k.block = k.in.claims, 'c'
			return true
		}
		k.claims, end, ok = flowMap(k.in, val)
	default:
		return false
	}
	return ok && isLineEnd(end)
}

// parseBlockEntry reads one line of a block scopes sequence ("- read")
// or claims mapping ("team: payments") into k.
func parseBlockEntry(k *rawKey, b []byte) bool {
	in := k.in
	if k.block == 's' {
		if len(b) < 2 || b[0] != '-' || b[1] != ' ' {
			return false
		}
		v, end, ok := scalarBytes(bytes.TrimLeft(b[2:], " "))
		if !ok || !isLineEnd(end) {
			return false
		}
		k.scopes = append(k.scopes, in.str(v))
		in.scopes = k.scopes[:0]
		return true
	}
	kb, rest, ok := mapKey(b)
	if !ok {
		return false
	}
	v, end, ok := mapValue(rest)
	if !ok || !isLineEnd(end) {
		return false
	}
	key := in.str(kb)
	if _, dup := k.claims[key]; dup {
		return false
	}
	k.claims[key] = in.str(v)
	return true
}

// mapKey reads a claim name and its ": ", returning what follows.
func mapKey(b []byte) ([]byte, []byte, bool) {
	if len(b) == 0 || !isLetter(b[0]) {
		return nil, nil, false
	}
	k, rest, ok := scalarBytes(b)
	if !ok || !stringWord(string(k)) || len(rest) < 2 || rest[0] != ':' || rest[1] != ' ' {
		return nil, nil, false
	}
	return k, bytes.TrimLeft(rest[2:], " "), true
}

// mapValue reads a claim value YAML reads as a string: quoted, or plain
// starting with a letter and not a bool or null word.
func mapValue(b []byte) ([]byte, []byte, bool) {
	quoted := len(b) > 0 && (b[0] == '"' || b[0] == '\'')
	if !quoted && (len(b) == 0 || !isLetter(b[0])) {
		return nil, nil, false // numbers, timestamps: typed by YAML
	}
	v, rest, ok := scalarBytes(b)
	if !ok || (!quoted && !stringWord(string(v))) {
		return nil, nil, false
	}
	return v, rest, true
}

// yamlPrintable: b is UTF-8 of characters YAML allows in a stream,
// without the ones it treats as line breaks (U+0085, U+2028, U+2029)
// and the byte order mark.
func yamlPrintable(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		switch {
		case r == 0x2028, r == 0x2029, r == 0xfeff:
			return false
		case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xd7ff,
			r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		default:
			return false
		}
		b = b[n:]
	}
	return true
}

// scalar reads one scalar at the start of b: plain, or quoted on this
// line without escapes. It returns the value and what follows it.
func scalar(b []byte) (string, []byte, bool) {
	v, rest, ok := scalarBytes(b)
	return string(v), rest, ok
}

// scalarBytes is scalar without the copy: the value is part of b.
func scalarBytes(b []byte) ([]byte, []byte, bool) {
	if len(b) == 0 {
		return nil, nil, false // null: leave it to YAML
	}
	switch q := b[0]; q {
	case '"', '\'':
		i := bytes.IndexByte(b[1:], q)
		if i < 0 {
			return nil, nil, false
		}
		v := b[1 : 1+i]
		if bytes.IndexByte(v, '\\') >= 0 || bytes.IndexByte(v, '$') >= 0 {
			return nil, nil, false // escapes, ${NAME}
		}
		rest := b[2+i:]
		if q == '\'' && len(rest) > 0 && rest[0] == '\'' {
			return nil, nil, false // '' escape
		}
		return v, rest, true
	}
	if !plainStart(b[0]) {
		return nil, nil, false
	}
	i := 1
	for i < len(b) && plainByte(b[i]) {
		i++
	}
	v := b[:i]
	switch string(v) {
	case "null", "Null", "NULL":
		return nil, nil, false
	}
	// The plain charset holds none of the flow indicators, so a plain
	// value reads the same inside [] and {}.
	return v, b[i:], true
}

func plainStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '/'
}

func plainByte(c byte) bool {
	return plainStart(c) || c == '.' || c == '@' || c == '+' || c == '-'
}

// flowSeq reads "[a, b]".
func flowSeq(in *interner, b []byte) ([]string, []byte, bool) {
	if len(b) == 0 || b[0] != '[' {
		return nil, nil, false
	}
	b = bytes.TrimLeft(b[1:], " ")
	out := in.scopes[:0]
	defer func() { in.scopes = out[:0] }()
	if len(b) > 0 && b[0] == ']' {
		return out, b[1:], true
	}
	for {
		v, rest, ok := scalarBytes(b)
		if !ok {
			return nil, nil, false
		}
		out = append(out, in.str(v))
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) == 0 {
			return nil, nil, false
		}
		switch rest[0] {
		case ']':
			return out, rest[1:], true
		case ',':
			b = bytes.TrimLeft(rest[1:], " ")
		default:
			return nil, nil, false
		}
	}
}

// flowMap reads "{k: v, k2: 'v2'}" with string values and distinct keys.
func flowMap(in *interner, b []byte) (map[string]any, []byte, bool) {
	if len(b) == 0 || b[0] != '{' {
		return nil, nil, false
	}
	b = bytes.TrimLeft(b[1:], " ")
	out := in.claims
	clear(out)
	if len(b) > 0 && b[0] == '}' {
		return out, b[1:], true
	}
	for {
		kb, rest, ok := mapKey(b)
		if !ok {
			return nil, nil, false
		}
		k := in.str(kb)
		if _, dup := out[k]; dup {
			return nil, nil, false
		}
		vb, rest, ok := mapValue(rest)
		if !ok {
			return nil, nil, false
		}
		out[k] = in.str(vb)
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) == 0 {
			return nil, nil, false
		}
		switch rest[0] {
		case '}':
			return out, rest[1:], true
		case ',':
			b = bytes.TrimLeft(rest[1:], " ")
		default:
			return nil, nil, false
		}
	}
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// stringWord: a plain scalar starting with a letter that YAML (1.2 as
// yaml.v3 resolves it, or 1.1 as other tools do) reads as a string.
func stringWord(s string) bool {
	switch strings.ToLower(s) {
	case "true", "false", "null", "yes", "no", "on", "off", "y", "n":
		return false
	}
	return true
}
