package ratelimit

import (
	"hash/maphash"
	"sync"
)

// overLimitCache remembers keys that are over their limit until their window
// ends, so a client hammering one key costs no store traffic. Keys hold
// their window start, so an entry can never outlive its window's meaning;
// the end time only lets full shards drop dead entries.
//
// An entry is keyed by the limit as well as by the key: the same counter
// can be judged under another limit (a descriptor's limit override, a
// caller whose plan changed, a reload), and a verdict reached under one
// must not answer for another.
type overLimitCache struct {
	seed     maphash.Seed
	shards   [16]cacheShard
	perShard int
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[cacheKey]int64 // → end of the verdict, Unix nanoseconds
}

// cacheKey is a store key and the limit its verdict was reached under
// (requests per window; a decision's key spells its limits itself).
type cacheKey struct {
	key   string
	limit uint32
}

func newOverLimitCache(size int) *overLimitCache {
	c := &overLimitCache{seed: maphash.MakeSeed(), perShard: max(1, size/16)}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]int64)
	}
	return c
}

func (c *overLimitCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

// overLimit reports whether key is cached as over limit at now.
func (c *overLimitCache) overLimit(key string, limit uint32, now int64) bool {
	s := c.shard(key)
	s.mu.RLock()
	end, ok := s.m[cacheKey{key, limit}]
	s.mu.RUnlock()
	return ok && now < end
}

// add caches key as over its limit until end. A full shard first drops
// expired entries; if it is still full the key is not cached (the store
// still answers correctly, only slower).
func (c *overLimitCache) add(key string, limit uint32, end int64) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		now := end - 1 // entries ending before this key's window are stale
		for k, e := range s.m {
			if e <= now {
				delete(s.m, k)
			}
		}
		if len(s.m) >= c.perShard {
			return
		}
	}
	s.m[cacheKey{key, limit}] = end
}

// clear drops every entry.
func (c *overLimitCache) clear() {
	for i := range c.shards {
		c.shards[i].mu.Lock()
		clear(c.shards[i].m)
		c.shards[i].mu.Unlock()
	}
}

// len is for tests.
func (c *overLimitCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}
