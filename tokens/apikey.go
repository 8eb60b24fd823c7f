package tokens

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// APIKeyConfig configures static API keys read from a file.
type APIKeyConfig struct {
	// File is a YAML file listing the keys (see APIKeyFile).
	File string `yaml:"file"`
	// Issuer is reported as the principal's issuer; default "api-keys".
	Issuer string `yaml:"issuer"`
	// MaxBytes rejects longer credentials unread; default 8 KiB.
	MaxBytes int `yaml:"max_bytes"`
}

// Validate checks the section (the file itself is read by NewAPIKeyVerifier).
func (c *APIKeyConfig) Validate() error {
	var errs []error
	if c.File == "" {
		errs = append(errs, yamlfile.Errorf("file", "required"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, yamlfile.Errorf("max_bytes", "must not be negative"))
	}
	return errors.Join(errs...)
}

// APIKeyFile is the format of the keys file. Keys are stored as the hex
// SHA-256 of the key, so the file (and the ConfigMap or Secret holding it)
// never holds a usable credential:
//
//	keys:
//	  - subject: ci-bot
//	    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	    app_id: ci
//	    scopes: [deploy]
//	    claims: {team: platform}
type APIKeyFile struct {
	Keys []APIKeyEntry `yaml:"keys"`
}

// APIKeyEntry is one key.
type APIKeyEntry struct {
	Subject string         `yaml:"subject"`
	SHA256  string         `yaml:"sha256"`
	AppID   string         `yaml:"app_id"`
	Scopes  []string       `yaml:"scopes"`
	Claims  map[string]any `yaml:"claims"`
}

// APIKeyVerifier accepts the keys listed in its file.
//
// Memory: each key costs one apiKeyEntry (56 bytes) plus its subject
// string; keys with the same app_id, scopes and claims share one copy of
// them, and the lookup index costs 4 bytes per 2 to 4 keys. A file in the
// plain format (see readPlainKeys) is read with a 64 KiB buffer and no
// YAML tree into entries allocated once at their size, with one
// allocation per key (its subject): loading peaks at about 100 bytes of
// heap per key and keeps about 75, so 1,000,000 keys load in 1-2 s
// within about 100 MiB of heap (BenchmarkAPIKeyLoad; loadtest/RESULTS.md). Other files are decoded by yaml.v3 as a whole,
// which costs about 5.5 KB per key while loading: keep large key files
// plain.
type APIKeyVerifier struct {
	issuer   string
	maxBytes int
	// entries are sorted by digest; index[b] is the first entry whose
	// digest's top bits are b (len(index) is 1<<bits + 1).
	entries []apiKeyEntry
	index   []uint32
	bits    uint
	attrs   []apiKeyAttrs
	revs    *revocation.List
	now     func() time.Time // set with revs
}

// apiKeyEntry is one key: the SHA-256 of the key, its subject, and its
// shared attributes.
type apiKeyEntry struct {
	digest  [sha256.Size]byte
	subject string
	attrs   uint32 // index in APIKeyVerifier.attrs
	pos     uint32 // position in the file, for messages while loading
}

type apiKeyAttrs struct {
	appID  string
	scopes []string
	claims map[string]any
}

// NewAPIKeyVerifier reads cfg.File. Errors name the file and the field.
func NewAPIKeyVerifier(cfg APIKeyConfig) (*APIKeyVerifier, error) {
	return NewAPIKeyVerifierWithOptions(cfg, Options{})
}

// NewAPIKeyVerifierWithOptions is NewAPIKeyVerifier with options; of them
// it uses Revocations (a key is revoked by its SHA-256, without a reload;
// subject epochs do not apply to API keys).
func NewAPIKeyVerifierWithOptions(cfg APIKeyConfig, opts Options) (*APIKeyVerifier, error) {
	v, err := newAPIKeyVerifier(cfg)
	if err != nil {
		return nil, err
	}
	opts.applyDefaults()
	v.revs, v.now = opts.Revocations, opts.Now
	return v, nil
}

func newAPIKeyVerifier(cfg APIKeyConfig) (*APIKeyVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := newAPIKeyBuilder(cfg)
	err := loadPlainKeys(cfg.File, b)
	if errors.Is(err, errNotPlain) {
		b = newAPIKeyBuilder(cfg)
		err = loadYAMLKeys(cfg.File, b)
	}
	if err != nil {
		return nil, err
	}
	return b.finish()
}

// loadPlainKeys reads a file in the plain format into b.
func loadPlainKeys(name string, b *apiKeyBuilder) error {
	f, err := os.Open(name)
	if err != nil {
		return yamlfile.Errorf("file", "%v", err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	// Count the keys first (a quick pass over the file) so that the
	// entries are allocated once, at their size.
	n, err := countItems(f)
	if err != nil {
		return yamlfile.Errorf("file", "%v", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return yamlfile.Errorf("file", "%v", err)
	}
	b.grow(n)
	err = readPlainKeys(f, func(k *rawKey) {
		subjectLine, shaLine := k.subjectLine, k.sha256Line
		if !k.hasSubject {
			subjectLine = k.line
		}
		if !k.hasSHA256 {
			shaLine = k.line
		}
		b.add(k.subject, k.digest, k.appID, k.scopes, k.claims, subjectLine, shaLine)
	})
	switch {
	case errors.Is(err, errNotPlain):
		return err
	case err != nil:
		return yamlfile.Errorf("file", "%v", err)
	}
	b.name = name
	return nil
}

// countItems counts the lines that start a list item ("- " after
// indentation): in a plain file, the keys. It is a capacity hint only:
// it stops counting at a line longer than its buffer (which the plain
// reader refuses anyway).
func countItems(r io.Reader) (int, error) {
	br := bufio.NewReaderSize(r, maxPlainLine)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if t := bytes.TrimLeft(line, " "); len(t) >= 2 && t[0] == '-' && t[1] == ' ' {
			n++
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, bufio.ErrBufferFull):
			return n, nil
		case err != nil:
			return 0, err
		}
	}
}

// loadYAMLKeys decodes any YAML file into b.
func loadYAMLKeys(name string, b *apiKeyBuilder) error {
	var f APIKeyFile
	yf, err := yamlfile.Load(name, &f, func(string) string { return "" })
	if err != nil {
		return yamlfile.Errorf("file", "%v", err)
	}
	b.yf = yf
	b.grow(len(f.Keys))
	for i := range f.Keys {
		k := &f.Keys[i]
		b.add(k.Subject, decodeDigest([]byte(k.SHA256)), k.AppID, k.Scopes, k.Claims, 0, 0)
		f.Keys[i] = APIKeyEntry{} // let the decoded entry go as soon as it is stored
	}
	return nil
}

// keyDigest is a decoded sha256 field: what hex.DecodeString makes of it
// after trimming spaces. n is the number of bytes it decoded (it decodes
// 32 before it notices a 65th digit), valid that it decoded exactly 32
// without error.
type keyDigest struct {
	sum   [sha256.Size]byte
	n     int
	valid bool
}

func decodeDigest(s []byte) keyDigest {
	s = bytes.TrimSpace(s)
	// hex.Decode stops at the first bad pair, so the first 66 digits
	// decide n up to "more than 32".
	t := s[:min(len(s), 2*sha256.Size+2)]
	var buf [sha256.Size + 1]byte
	n, err := hex.Decode(buf[:], t)
	d := keyDigest{n: n, valid: err == nil && n == sha256.Size && len(s) == 2*sha256.Size}
	if n == sha256.Size {
		copy(d.sum[:], buf[:n])
	}
	return d
}

// apiKeyBuilder checks keys as the file lists them and builds the
// verifier's tables.
type apiKeyBuilder struct {
	v       *APIKeyVerifier
	name    string
	yf      *yamlfile.File // set for files decoded by yaml.v3: it finds lines
	lines   []uint32       // per key in file order: line of its sha256 (plain files)
	errs    []keyError
	pos     uint32
	interns map[string]uint32
	keyBuf  []byte
}

type keyError struct {
	pos, seq uint32
	line     uint32
	err      error
}

func newAPIKeyBuilder(cfg APIKeyConfig) *apiKeyBuilder {
	v := &APIKeyVerifier{issuer: cfg.Issuer, maxBytes: cfg.MaxBytes}
	if v.issuer == "" {
		v.issuer = "api-keys"
	}
	if v.maxBytes == 0 {
		v.maxBytes = 8 << 10
	}
	return &apiKeyBuilder{v: v, interns: map[string]uint32{}}
}

func (b *apiKeyBuilder) grow(n int) {
	b.v.entries = slices.Grow(b.v.entries, n)
}

// add checks one key as the file lists it. subjectLine and shaLine are
// the lines its errors are reported on (0 when b.yf finds them).
func (b *apiKeyBuilder) add(subject string, d keyDigest, appID string, scopes []string, claims map[string]any, subjectLine, shaLine int) {
	pos := b.pos
	b.pos++
	switch {
	case subject == "":
		b.errs = append(b.errs, keyError{pos: pos, line: uint32(subjectLine),
			err: yamlfile.Errorf(yamlfile.Index("keys", int(pos))+".subject", "required")})
	case !d.valid:
		b.errs = append(b.errs, keyError{pos: pos, line: uint32(shaLine),
			err: yamlfile.Errorf(yamlfile.Index("keys", int(pos))+".sha256", "must be 64 hex digits (the SHA-256 of the key)")})
	}
	if b.yf == nil {
		b.lines = append(b.lines, uint32(shaLine))
	}
	if d.n != sha256.Size {
		return
	}
	b.v.entries = append(b.v.entries, apiKeyEntry{digest: d.sum, subject: subject, attrs: b.intern(appID, scopes, claims), pos: pos})
}

// intern returns the index of the attributes, shared between keys that
// have the same ones.
func (b *apiKeyBuilder) intern(appID string, scopes []string, claims map[string]any) uint32 {
	key, ok := b.attrKey(appID, scopes, claims)
	if ok {
		if i, seen := b.interns[string(key)]; seen {
			return i
		}
	}
	i := uint32(len(b.v.attrs))
	// Copies: the plain reader reuses its scopes and claims.
	b.v.attrs = append(b.v.attrs, apiKeyAttrs{appID: appID, scopes: slices.Clip(slices.Clone(scopes)), claims: maps.Clone(claims)})
	if ok {
		b.interns[string(key)] = i
	}
	return i
}

// attrKey encodes the attributes (telling nil from empty) when claims
// hold only strings; ok is false otherwise, and the key is not shared.
func (b *apiKeyBuilder) attrKey(appID string, scopes []string, claims map[string]any) ([]byte, bool) {
	k := b.keyBuf[:0]
	k = appendLenString(k, appID)
	if scopes == nil {
		k = append(k, 'n')
	} else {
		k = append(k, 's')
		k = binary.AppendUvarint(k, uint64(len(scopes)))
		for _, s := range scopes {
			k = appendLenString(k, s)
		}
	}
	if claims == nil {
		k = append(k, 'n')
	} else {
		k = append(k, 'm')
		names := make([]string, 0, len(claims))
		for n, v := range claims {
			if _, ok := v.(string); !ok {
				return nil, false
			}
			names = append(names, n)
		}
		slices.Sort(names)
		k = binary.AppendUvarint(k, uint64(len(names)))
		for _, n := range names {
			k = appendLenString(k, n)
			k = appendLenString(k, claims[n].(string))
		}
	}
	b.keyBuf = k
	return k, true
}

func appendLenString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// finish sorts the keys, reports duplicates, and builds the index.
func (b *apiKeyBuilder) finish() (*APIKeyVerifier, error) {
	v := b.v
	slices.SortFunc(v.entries, func(x, y apiKeyEntry) int {
		if c := bytes.Compare(x.digest[:], y.digest[:]); c != 0 {
			return c
		}
		return cmp.Compare(x.pos, y.pos)
	})
	for i := 1; i < len(v.entries); i++ {
		if e := &v.entries[i]; e.digest == v.entries[i-1].digest {
			var line uint32
			if b.yf == nil {
				line = b.lines[e.pos]
			}
			b.errs = append(b.errs, keyError{pos: e.pos, seq: 1, line: line,
				err: yamlfile.Errorf(yamlfile.Index("keys", int(e.pos))+".sha256", "the same key is listed twice")})
		}
	}
	if len(b.errs) > 0 {
		return nil, b.errors()
	}
	v.entries = slices.Clip(v.entries)
	v.attrs = slices.Clip(v.attrs)
	v.buildIndex()
	return v, nil
}

// errors joins the problems found, in file order, as
// "file: name:line: keys[i].field: message" (as yamlfile reports them).
func (b *apiKeyBuilder) errors() error {
	slices.SortStableFunc(b.errs, func(x, y keyError) int {
		if c := cmp.Compare(x.pos, y.pos); c != 0 {
			return c
		}
		return cmp.Compare(x.seq, y.seq)
	})
	errs := make([]error, len(b.errs))
	for i, e := range b.errs {
		errs[i] = e.err
		if b.yf == nil {
			errs[i] = fmt.Errorf("%s:%d: %w", b.name, e.line, e.err)
		}
	}
	err := errors.Join(errs...)
	if b.yf != nil {
		err = b.yf.Annotate(err)
	}
	return yamlfile.Errorf("file", "%v", err)
}

// buildIndex makes index: about four keys per bucket, by the top bits of
// their digests (uniform: they are SHA-256 values).
func (v *APIKeyVerifier) buildIndex() {
	for v.bits < 24 && 4<<v.bits < len(v.entries) {
		v.bits++
	}
	v.index = make([]uint32, 1<<v.bits+1)
	e := 0
	for bucket := range 1 << v.bits {
		for e < len(v.entries) && v.bucket(&v.entries[e].digest) < uint32(bucket) {
			e++
		}
		v.index[bucket] = uint32(e)
	}
	v.index[1<<v.bits] = uint32(len(v.entries))
}

func (v *APIKeyVerifier) bucket(d *[sha256.Size]byte) uint32 {
	if v.bits == 0 {
		return 0
	}
	return binary.BigEndian.Uint32(d[:4]) >> (32 - v.bits)
}

// lookup finds the entry with digest d: a binary search of its bucket.
func (v *APIKeyVerifier) lookup(d *[sha256.Size]byte) *apiKeyEntry {
	b := v.bucket(d)
	lo, hi := int(v.index[b]), int(v.index[b+1])
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := bytes.Compare(v.entries[m].digest[:], d[:]); {
		case c == 0:
			return &v.entries[m]
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return nil
}

// Verify looks the key up by its SHA-256. The lookup reveals nothing
// useful through timing: comparisons are between SHA-256 values, so an
// attacker would have to choose the hash of a key, not the key, to learn
// anything from them (as with the map this replaces).
func (v *APIKeyVerifier) Verify(ctx context.Context, credential string) (Principal, error) {
	if len(credential) > v.maxBytes {
		return Principal{}, ErrTooLarge
	}
	d := sha256.Sum256([]byte(credential))
	e := v.lookup(&d)
	if e == nil {
		return Principal{}, ErrUnknownCredential
	}
	a := &v.attrs[e.attrs]
	p := Principal{
		Subject: e.subject, Issuer: v.issuer, Method: MethodAPIKey,
		AppID: a.appID, Scopes: a.scopes, Claims: a.claims,
	}
	if v.revs != nil {
		if err := revoked(ctx, v.revs, v.now(), &p, revocation.KindAPIKey, &revIDs{}, &d); err != nil {
			return Principal{}, err
		}
	}
	return p, nil
}

// HashAPIKey returns the value to put in a keys file's sha256 field.
func HashAPIKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// String describes the verifier without any key material.
func (v *APIKeyVerifier) String() string {
	return fmt.Sprintf("api-key verifier (%d keys, issuer %s)", len(v.entries), v.issuer)
}

// Subjects are the subjects of the verifier's keys, one per key (two keys
// may share a subject), in no particular order: names for a reload log,
// never key material. It reads the loaded table, not the file.
func (v *APIKeyVerifier) Subjects() []string {
	out := make([]string, len(v.entries))
	for i := range v.entries {
		out[i] = v.entries[i].subject
	}
	return out
}
