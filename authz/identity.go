package authz

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// identityHeaders is the compiled IdentityHeaders: the names to set, and
// every name (identity and also_remove) a client may never send upstream.
type identityHeaders struct {
	subject, issuer, method, appID, scopes string
	claims                                 []claimHeader
	// all is every identity header name, lower case, sorted: removed from
	// every allowed request unless set.
	all []string
	// keys holds the headerKey of every name in all: a request header whose
	// headerKey is here is a spelling of an identity header.
	keys map[string]bool
	// removals memoises, per set of names in all that an answer sets (a
	// bit mask over all's indices), the rest of all: the names to remove.
	// The lists are clipped and shared, never modified. A pipeline
	// compiles its own, so a reload never serves another's.
	removals *removalMemo
	// sets memoises the headers to set per verified principal (see
	// setMemo); per pipeline, like removals.
	sets *setMemo
}

// removalMemo is a bounded map from a mask over identityHeaders.all to the
// names of all outside the mask: an immutable map, replaced by a copy with
// one more entry on a miss (a handful of masks, so a handful of copies),
// so a hit is a plain map read without locks or boxing the key.
type removalMemo struct {
	m  atomic.Pointer[map[uint64][]string]
	mu sync.Mutex // serialises the copies
}

func (m *removalMemo) load(mask uint64) ([]string, bool) {
	if p := m.m.Load(); p != nil {
		v, ok := (*p)[mask]
		return v, ok
	}
	return nil, false
}

func (m *removalMemo) store(mask uint64, v []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var old map[uint64][]string
	if p := m.m.Load(); p != nil {
		old = *p
	}
	if _, ok := old[mask]; ok || len(old) >= maxRemovalMasks {
		return
	}
	next := make(map[uint64][]string, len(old)+1)
	maps.Copy(next, old)
	next[mask] = v
	m.m.Store(&next)
}

// maxRemovalMasks bounds removalMemo: an answer sets at most the five
// principal headers and the claim headers, so a deployment sees a handful
// of masks; past the bound the list is computed per request.
const maxRemovalMasks = 64

type claimHeader struct{ claim, header string }

func compileIdentity(h IdentityHeaders) identityHeaders {
	name := func(s string) string {
		if s == "-" {
			return ""
		}
		return headerKey(s)
	}
	out := identityHeaders{
		subject: name(h.Subject), issuer: name(h.Issuer), method: name(h.Method),
		appID: name(h.AppID), scopes: name(h.Scopes), keys: map[string]bool{},
		removals: &removalMemo{}, sets: &setMemo{},
	}
	claims := make([]string, 0, len(h.Claims))
	for c := range h.Claims {
		claims = append(claims, c)
	}
	slices.Sort(claims)
	for _, c := range claims {
		if n := name(h.Claims[c]); n != "" {
			out.claims = append(out.claims, claimHeader{claim: c, header: n})
		}
	}
	for _, n := range []string{out.subject, out.issuer, out.method, out.appID, out.scopes} {
		if n != "" {
			out.all = append(out.all, n)
		}
	}
	for _, c := range out.claims {
		out.all = append(out.all, c.header)
	}
	for _, n := range h.AlsoRemove {
		out.all = append(out.all, ASCIILower(n))
	}
	slices.Sort(out.all)
	out.all = slices.Compact(out.all)
	for _, n := range out.all {
		out.keys[headerKey(n)] = true
	}
	return out
}

// headerKey is the name an upstream may map a header name to: ASCII lower
// case with '_' read as '-'. CGI-style servers (PHP, WSGI, Rack, many
// frameworks) turn both "X-Auth-Subject" and "X_Auth_Subject" into
// HTTP_X_AUTH_SUBJECT, so removing only the dashed spelling lets a client
// forge the identity.
func headerKey(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '_' || 'A' <= c && c <= 'Z' {
			b := []byte(name)
			for j, c := range b {
				switch {
				case c == '_':
					b[j] = '-'
				case 'A' <= c && c <= 'Z':
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// isHeaderKey reports whether name is its own headerKey (no '_', no upper
// case): the common case, checked without allocating.
func isHeaderKey(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '_' || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// render computes the identity headers of an allowed, authenticated request:
// the ones to set and every other identity header (in any spelling the
// request carries) to remove, so a client can never forge one, followed by
// strip, the stripped credential's header, when not empty. (Envoy applies
// headers before removals, so a header is never both set and removed.) It
// returns false when a value cannot be forwarded faithfully: the request is
// then refused rather than sent without its identity. Both lists may be
// shared (memoised) and have no spare capacity: callers append, never
// write into them.
func (h *identityHeaders) render(id *Identity, scan *headerScan, strip string) (set []Header, remove []string, ok bool) {
	set, remove, ok = h.sets.get(id, strip)
	if !ok {
		if set, ok = h.renderSet(id); !ok {
			return nil, nil, false
		}
		remove = h.removeUnset(set)
		if strip != "" {
			remove = slices.Concat(remove, []string{strip}) // clipped: Concat allocates exactly
		}
		h.sets.put(id, strip, set, remove)
	}
	if extra := scan.spellings(h.keys); len(extra) > 0 {
		if strip != "" {
			return set, slices.Concat(remove[:len(remove)-1], extra, []string{strip}), true
		}
		remove = slices.Concat(remove, extra)
	}
	return set, remove, true
}

// renderSet computes the identity headers to set, clipped (callers append
// to it, and a memoised list must then be copied), or false when a value
// cannot be forwarded faithfully.
func (h *identityHeaders) renderSet(id *Identity) (set []Header, ok bool) {
	set = make([]Header, 0, 6+len(h.claims)) // +1: the cookie header, when a cookie is stripped
	ok = true
	add := func(name, value string, required bool) {
		if name == "" {
			return
		}
		if value == "" && !required {
			return
		}
		if !forwardable(value) {
			ok = false
			return
		}
		set = append(set, Header{Name: name, Value: value})
	}
	add(h.subject, id.Subject, true)
	add(h.issuer, id.Issuer, false)
	add(h.method, id.Method, false)
	add(h.appID, id.AppID, false)
	for _, s := range id.Scopes {
		// One scope holding a space would read as two upstream, and not
		// only an ASCII one: Python's str.split() and strings.Fields also
		// split at U+00A0, U+2003, U+0085 and the other Unicode spaces.
		if s == "" || strings.ContainsFunc(s, unicode.IsSpace) {
			ok = false
		}
	}
	add(h.scopes, strings.Join(id.Scopes, " "), false)
	for _, c := range h.claims {
		if v, present, good := claimHeaderValue(id.Claims[c.claim]); present {
			ok = ok && good
			add(c.header, v, false)
		}
	}
	if !ok {
		return nil, false
	}
	return slices.Clip(set), true
}

// removeUnset returns the names of all that set does not set, in all's
// order: from the memo when all is short enough for a mask. The result is
// shared: callers append to it (its capacity is its length, so that
// copies) but never write into it.
func (h *identityHeaders) removeUnset(set []Header) []string {
	if h.removals == nil || len(h.all) > 64 {
		return slices.Clip(h.removeUnsetSlow(set))
	}
	var mask uint64
	for _, s := range set {
		if i, found := slices.BinarySearch(h.all, s.Name); found {
			mask |= 1 << i
		}
	}
	if v, ok := h.removals.load(mask); ok {
		return v
	}
	remove := slices.Clip(h.removeUnsetSlow(set))
	h.removals.store(mask, remove)
	return remove
}

func (h *identityHeaders) removeUnsetSlow(set []Header) []string {
	remove := make([]string, 0, len(h.all))
	for _, n := range h.all {
		if !slices.ContainsFunc(set, func(s Header) bool { return s.Name == n }) {
			remove = append(remove, n)
		}
	}
	return remove
}

// claimHeaderValue renders a claim for an identity header. present is
// false when the claim is absent or not a scalar or list of scalars (then
// the header is removed, not set); good is false when a list element holds
// the ',' that separates elements, which would forge another element.
func claimHeaderValue(v any) (s string, present, good bool) {
	if v == nil {
		return "", false, true
	}
	s, present = claimString(v)
	if !present {
		return "", false, true
	}
	if _, scalar := v.(string); scalar {
		return s, true, true
	}
	return s, true, !listHoldsComma(v)
}

func listHoldsComma(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, ",")
	case []any:
		return slices.ContainsFunc(x, listHoldsComma)
	case []string:
		return slices.ContainsFunc(x, func(e string) bool { return strings.Contains(e, ",") })
	}
	return false
}

// forwardable reports whether an identity value reaches the upstream
// exactly as we judged it: valid UTF-8 (protobuf would otherwise replace
// bytes and merge distinct identities), no control characters (Envoy
// refuses the C0 ones; a tab is folded by some parsers; C1 controls such as
// U+0085 NEL and the separators U+2028 and U+2029 are line breaks to
// Python's str.splitlines and JavaScript), no leading or trailing
// whitespace (HTTP parsers trim spaces, so " admin" would arrive as
// "admin", and an upstream that decodes the value as UTF-8 and calls
// Python's strip() or Java's strip() also trims "admin\u00a0"), not empty,
// and not overlong.
func forwardable(v string) bool {
	if v == "" || len(v) > 4096 {
		return false
	}
	ascii := true
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c == 0x7f {
			return false
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	if ascii {
		return v[0] != ' ' && v[len(v)-1] != ' '
	}
	if !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	first, _ := utf8.DecodeRuneInString(v)
	last, _ := utf8.DecodeLastRuneInString(v)
	return !unicode.IsSpace(first) && !unicode.IsSpace(last)
}

// setMemo keeps the rendered identity headers per verified principal, so
// a principal served from a verifier's cache is not rendered (checked,
// joined, copied) again on every request. An entry is found by the address
// of the principal's Claims map, which a verifier allocates once per
// verification and then shares, read-only, with every cache hit
// (tokens.Principal), and by the Subject (API keys may share one map
// between many subjects); the entry keeps that map and the Scopes slice, so
// their memory cannot be reused for another principal while the entry
// lives, and it is served only when every input of renderSet is the same:
// the same map and Scopes (address and length) and equal Subject, Issuer,
// Method and AppID. A principal without Claims is rendered every time.
// Bounded (16x512 entries, each keeping a principal's Claims map alive): a
// full shard is emptied. A principal that is never served from a verifier's
// cache costs one put that no request reads; put gives up rather than wait
// for a busy shard.
type setMemo struct {
	shards [setMemoShards]setMemoShard
}

const (
	setMemoShards   = 16
	setMemoPerShard = 512
)

type setMemoShard struct {
	mu sync.RWMutex
	m  map[setMemoKey]setMemoEntry
}

type setMemoKey struct {
	claims  uintptr
	subject string
}

type setMemoEntry struct {
	claims                         map[string]any
	scopes                         []string
	subject, issuer, method, appID string
	strip                          string
	set                            []Header
	remove                         []string // removeUnset(set), then strip
}

// claimsAddr is the address of a Claims map, 0 for none.
func claimsAddr(m map[string]any) uintptr {
	if m == nil {
		return 0
	}
	return uintptr(reflect.ValueOf(m).UnsafePointer())
}

func (e *setMemoEntry) serves(id *Identity, strip string) bool {
	return e.strip == strip && len(e.scopes) == len(id.Scopes) && (len(e.scopes) == 0 || &e.scopes[0] == &id.Scopes[0]) &&
		e.subject == id.Subject && e.issuer == id.Issuer && e.method == id.Method && e.appID == id.AppID
}

func (m *setMemo) shard(addr uintptr) *setMemoShard {
	return &m.shards[(addr>>4)%setMemoShards]
}

// get returns the memoised headers to set for id, and the identity
// headers they leave to remove followed by strip.
func (m *setMemo) get(id *Identity, strip string) ([]Header, []string, bool) {
	addr := claimsAddr(id.Claims)
	if m == nil || addr == 0 {
		return nil, nil, false
	}
	s := m.shard(addr)
	s.mu.RLock()
	e, ok := s.m[setMemoKey{addr, id.Subject}]
	s.mu.RUnlock()
	if !ok || !e.serves(id, strip) {
		return nil, nil, false
	}
	return e.set, e.remove, true
}

// put memoises set, rendered for id, and remove, its removeUnset and strip.
func (m *setMemo) put(id *Identity, strip string, set []Header, remove []string) {
	addr := claimsAddr(id.Claims)
	if m == nil || addr == 0 {
		return
	}
	s := m.shard(addr)
	if !s.mu.TryLock() {
		return // another request is writing this shard: render again next time rather than wait
	}
	if s.m == nil || len(s.m) >= setMemoPerShard {
		s.m = make(map[setMemoKey]setMemoEntry)
	}
	s.m[setMemoKey{addr, id.Subject}] = setMemoEntry{claims: id.Claims, scopes: id.Scopes, subject: id.Subject, issuer: id.Issuer,
		method: id.Method, appID: id.AppID, strip: strip, set: set, remove: remove}
	s.mu.Unlock()
}
