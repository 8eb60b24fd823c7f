package assertion

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// KeyRing is the signing key and the keys published beside it. It either
// holds keys read from files (the operator rotates them: publish the next
// key, wait for the verifiers to fetch it, then make it the signing key and
// keep the old one published until its last assertion expired), or
// generates its own and rotates them every RotationPeriod:
//
//   - the next key is generated one period before it signs and published
//     from then on, so a verifier that refreshes its JWKS at least once a
//     period knows it before it sees an assertion signed with it;
//   - a retired key stays published for Retain (the assertion lifetime and
//     a clock-skew margin) after it signed its last assertion.
//
// Rotation is lazy: the first Signing or JWKS call past the rotation time
// rotates, under a lock; every other call reads an immutable snapshot. No
// goroutine runs.
//
// Generated keys live in memory only: every replica and every restart has
// its own. See docs/upstream-assertion.md for when that is not enough
// (several replicas behind one JWKS URL; verifiers that cache the JWKS
// longer than a rotation period).
type KeyRing struct {
	state    atomic.Pointer[ringState]
	mu       sync.Mutex // serialises rotation
	generate string     // algorithm of generated keys; "" for file keys
	period   time.Duration
	retain   time.Duration
	now      func() time.Time
}

type ringState struct {
	signing *Key
	next    *Key // generated rings only
	retired []retiredKey
	// published is every key above, signing first.
	published []*Key
	jwks      []byte
	rotateAt  time.Time // zero: never (file keys)
}

type retiredKey struct {
	key   *Key
	until time.Time
}

// RingOptions configure a generated KeyRing; the zero value works.
type RingOptions struct {
	// RotationPeriod is how long a generated key signs (and, before that,
	// how long it is published as the next key). Default 24h.
	RotationPeriod time.Duration
	// Retain is how long a retired key stays published. Default 1h; set
	// it to at least the assertion lifetime and the verifiers' clock skew.
	Retain time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// NewFileRing returns a ring that signs with signing and publishes it and
// published (the next and previous keys). Keys are published once each,
// by kid.
func NewFileRing(signing *Key, published []*Key) (*KeyRing, error) {
	if signing == nil || !signing.CanSign() {
		return nil, errors.New("the signing key must be a private key")
	}
	// A key that cannot verify its own signature would publish a JWKS
	// nobody can use: refuse it at load, not at the first request.
	probe := []byte("ext-authz assertion key self-check")
	sig, err := signing.sign(probe)
	if err != nil || !signing.verify(probe, sig) {
		return nil, fmt.Errorf("the signing key fails its self-check: %w", err)
	}
	st := &ringState{signing: signing}
	seen := map[string]bool{signing.ID: true}
	for _, k := range published {
		if !seen[k.ID] {
			seen[k.ID] = true
			st.retired = append(st.retired, retiredKey{key: k})
		}
	}
	st.render()
	r := &KeyRing{now: time.Now}
	r.state.Store(st)
	return r, nil
}

// NewGeneratedRing returns a ring that generates alg keys (ES256 or EdDSA)
// and rotates them. It generates the first signing key and the next key
// now.
func NewGeneratedRing(alg string, opts RingOptions) (*KeyRing, error) {
	r := &KeyRing{generate: alg, period: opts.RotationPeriod, retain: opts.Retain, now: opts.Now}
	if r.period <= 0 {
		r.period = 24 * time.Hour
	}
	if r.retain <= 0 {
		r.retain = time.Hour
	}
	if r.now == nil {
		r.now = time.Now
	}
	signing, err := GenerateKey(alg)
	if err != nil {
		return nil, err
	}
	next, err := GenerateKey(alg)
	if err != nil {
		return nil, err
	}
	st := &ringState{signing: signing, next: next, rotateAt: r.now().Add(r.period)}
	st.render()
	r.state.Store(st)
	return r, nil
}

// render fills published and jwks from the keys.
func (s *ringState) render() {
	s.published = append(s.published[:0], s.signing)
	if s.next != nil {
		s.published = append(s.published, s.next)
	}
	for _, k := range s.retired {
		s.published = append(s.published, k.key)
	}
	s.jwks = marshalJWKS(s.published)
}

// current returns the snapshot, rotated first when it is due.
func (r *KeyRing) current() (*ringState, error) {
	st := r.state.Load()
	if st.rotateAt.IsZero() || r.now().Before(st.rotateAt) {
		return st, nil
	}
	return r.rotate()
}

// rotate makes the next key the signing key, retires the signing key,
// generates a new next key and drops retired keys past their time. A ring
// idle for several periods rotates once: its keys signed nothing since.
func (r *KeyRing) rotate() (*ringState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.state.Load()
	now := r.now()
	if now.Before(st.rotateAt) {
		return st, nil // another call rotated
	}
	next, err := GenerateKey(r.generate)
	if err != nil {
		// Keep signing with the current key (its retirement only moves
		// later); try again on the next call.
		return st, fmt.Errorf("rotate assertion key: %w", err)
	}
	ns := &ringState{signing: st.next, next: next, rotateAt: now.Add(r.period)}
	// The retiring key signed until now: its assertions live Retain more.
	ns.retired = append(ns.retired, retiredKey{key: st.signing, until: now.Add(r.retain)})
	for _, k := range st.retired {
		if now.Before(k.until) {
			ns.retired = append(ns.retired, k)
		}
	}
	ns.render()
	r.state.Store(ns)
	return ns, nil
}

// Signing returns the key that signs now.
func (r *KeyRing) Signing() *Key {
	st, _ := r.current() // a failed rotation keeps the current key signing
	return st.signing
}

// JWKS returns the JWK Set of every published key (the signing key first).
// The slice is shared: callers must not modify it.
func (r *KeyRing) JWKS() []byte {
	st, _ := r.current()
	return st.jwks
}

// Published returns the published keys, the signing key first.
func (r *KeyRing) Published() []*Key {
	st, _ := r.current()
	return append([]*Key(nil), st.published...)
}
