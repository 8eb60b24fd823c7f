package tokens

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// CacheConfig bounds a verifier's cache of verified credentials.
type CacheConfig struct {
	// Size is the most entries kept; 0 means the default (10000), a negative
	// value turns the cache off.
	Size int `yaml:"size"`
	// MaxTTL caps how long an entry lives even when the credential is valid
	// for longer; default 5m. An entry never outlives the credential's expiry.
	MaxTTL time.Duration `yaml:"max_ttl"`
}

const (
	defaultCacheSize   = 10000
	defaultCacheMaxTTL = 5 * time.Minute
	cacheShards        = 32
)

func (c *CacheConfig) applyDefaults() {
	if c.Size == 0 {
		c.Size = defaultCacheSize
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = defaultCacheMaxTTL
	}
}

func (c *CacheConfig) validate() error {
	if c.MaxTTL < 0 {
		return errorf("max_ttl", "must not be negative")
	}
	return nil
}

// cacheKey is the SHA-256 of the whole credential. Each verifier owns its
// cache, so an entry is keyed by (verifier, hash of the credential): a token
// accepted by one issuer configuration is never served from another's cache,
// and the key is never a prefix of the token or its subject.
type cacheKey [sha256.Size]byte

func keyOf(credential string) cacheKey { return sha256.Sum256(stringBytes(credential)) }

// cacheEntry is a verification outcome: a principal, or (for negative
// caching) a rejection.
type cacheEntry struct {
	principal Principal
	rev       revIDs
	err       error // a *CredentialError, or nil
	until     time.Time
	// staleUntil, when after until, keeps an accepted entry past until so
	// that it can be served while the store fails (see stale); get never
	// returns it after until.
	staleUntil time.Time
}

// keepUntil is when the cache may drop the entry.
func (e *cacheEntry) keepUntil() time.Time {
	if e.staleUntil.After(e.until) {
		return e.staleUntil
	}
	return e.until
}

// verifiedCache is a bounded, sharded map from credential hash to outcome.
// Reads take one shard's read lock; writes evict expired entries, then an
// arbitrary one, when the shard is full.
type verifiedCache struct {
	shards   [cacheShards]cacheShard
	perShard int
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[cacheKey]cacheEntry
}

// newVerifiedCache returns a cache of about size entries, or nil (a cache
// that holds nothing) when size is negative.
func newVerifiedCache(size int) *verifiedCache {
	if size < 0 {
		return nil
	}
	per := (size + cacheShards - 1) / cacheShards
	if per < 1 {
		per = 1
	}
	c := &verifiedCache{perShard: per}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]cacheEntry)
	}
	return c
}

func (c *verifiedCache) shard(k *cacheKey) *cacheShard {
	return &c.shards[k[0]%cacheShards]
}

// get returns the live entry for k.
func (c *verifiedCache) get(k *cacheKey, now time.Time) (cacheEntry, bool) {
	if c == nil {
		return cacheEntry{}, false
	}
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[*k]
	s.mu.RUnlock()
	if !ok {
		return cacheEntry{}, false
	}
	if !now.Before(e.until) {
		if now.Before(e.keepUntil()) {
			return cacheEntry{}, false // kept for stale, not fresh
		}
		s.mu.Lock()
		if cur, ok := s.m[*k]; ok && !now.Before(cur.keepUntil()) {
			delete(s.m, *k)
		}
		s.mu.Unlock()
		return cacheEntry{}, false
	}
	return e, true
}

// stale returns the entry for k, fresh or kept past its time for serving
// while the store fails, as long as now is before its staleUntil.
func (c *verifiedCache) stale(k *cacheKey, now time.Time) (cacheEntry, bool) {
	if c == nil {
		return cacheEntry{}, false
	}
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[*k]
	s.mu.RUnlock()
	if !ok || !now.Before(e.staleUntil) {
		return cacheEntry{}, false
	}
	return e, true
}

// put stores e under k. An entry that is already expired is not stored,
// and it removes what k held: a newer outcome (a revocation that is not
// negatively cached) must not leave an older acceptance to be served stale.
func (c *verifiedCache) put(k *cacheKey, e cacheEntry, now time.Time) {
	if c == nil {
		return
	}
	s := c.shard(k)
	if !now.Before(e.keepUntil()) {
		s.mu.Lock()
		delete(s.m, *k)
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	if _, ok := s.m[*k]; !ok && len(s.m) >= c.perShard {
		s.evict(now, c.perShard)
	}
	s.m[*k] = e
	s.mu.Unlock()
}

// evict makes room for one entry: it drops expired entries it meets while
// scanning a bounded number of them, and if none were expired, one arbitrary
// entry (Go's map iteration order is randomised).
func (s *cacheShard) evict(now time.Time, limit int) {
	const scan = 16
	var victim *cacheKey
	n := 0
	for k, e := range s.m {
		if !now.Before(e.keepUntil()) {
			delete(s.m, k)
		} else if victim == nil {
			victim = &k
		}
		if n++; n >= scan {
			break
		}
	}
	if len(s.m) >= limit && victim != nil {
		delete(s.m, *victim)
	}
}

// len counts entries, for tests.
func (c *verifiedCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// cacheUntil is when an entry for a credential valid until expiry, verified
// at now, stops being served: at expiry or after maxTTL, whichever is first.
func cacheUntil(now, expiry time.Time, maxTTL time.Duration) time.Time {
	until := now.Add(maxTTL)
	if !expiry.IsZero() && expiry.Before(until) {
		return expiry
	}
	return until
}

// front is what every verifier that checks tokens locally does around its
// own check: bound the credential's size, serve it from the verified-token
// cache, and remember what it accepted. (A method pair rather than a
// callback, so a cache hit allocates nothing.)
type front struct {
	maxBytes int
	maxTTL   time.Duration
	cache    *verifiedCache
	counters cacheCounters
	now      func() time.Time
	// revs, when set, is asked about every credential served (cached or
	// not); revKind is the kind of the verifier's own credential ids.
	revs    *revocation.List
	revKind revocation.Kind
}

// lookup rejects an empty or oversized credential, and returns the cached
// principal when there is one (hit) and not revoked. On a miss it returns
// the key and the time to pass to remember after the verifier's own check.
func (f *front) lookup(ctx context.Context, credential string) (p Principal, key cacheKey, now time.Time, hit bool, err error) {
	switch {
	case credential == "":
		return p, key, now, false, ErrMissing
	case len(credential) > f.maxBytes:
		return p, key, now, false, ErrTooLarge
	}
	now = f.now()
	key = keyOf(credential)
	if e, ok := f.cache.get(&key, now); ok {
		f.counters.observe(true)
		if err := revoked(ctx, f.revs, now, &e.principal, f.revKind, &e.rev, nil); err != nil {
			return p, key, now, false, err
		}
		return e.principal, key, now, true, nil
	}
	f.counters.observe(false)
	return p, key, now, false, nil
}

// remember checks a freshly verified principal against the revocations,
// then caches it until its expiry (bounded by the cache's max TTL): the
// entry is cached either way, since every hit is checked again.
func (f *front) remember(ctx context.Context, key *cacheKey, p *Principal, rev *revIDs, now time.Time) error {
	f.cache.put(key, cacheEntry{principal: *p, rev: *rev, until: cacheUntil(now, p.Expiry, f.maxTTL)}, now)
	return revoked(ctx, f.revs, now, p, f.revKind, rev, nil)
}
