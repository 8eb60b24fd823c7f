package tokens

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestVerifiedCacheIsBounded(t *testing.T) {
	c := newVerifiedCache(64)
	for i := range 10000 {
		k := keyOf("token-" + strconv.Itoa(i))
		c.put(&k, cacheEntry{principal: Principal{Subject: "s"}, until: t0.Add(time.Hour)}, t0)
	}
	if n := c.len(); n > 64 {
		t.Fatalf("cache holds %d entries, bound is 64", n)
	}
	// The newest entry is always kept.
	k := keyOf("token-9999")
	if _, ok := c.get(&k, t0); !ok {
		t.Fatal("newest entry evicted")
	}
}

func TestVerifiedCacheExpiry(t *testing.T) {
	c := newVerifiedCache(16)
	k := keyOf("a")
	c.put(&k, cacheEntry{principal: Principal{Subject: "a"}, until: t0.Add(time.Second)}, t0)
	if e, ok := c.get(&k, t0.Add(999*time.Millisecond)); !ok || e.principal.Subject != "a" {
		t.Fatal("entry missing before its end")
	}
	if _, ok := c.get(&k, t0.Add(time.Second)); ok {
		t.Fatal("entry served at its end")
	}
	if c.len() != 0 {
		t.Fatal("expired entry not dropped")
	}
	// Already-expired entries are not stored; a nil cache stores nothing.
	c.put(&k, cacheEntry{until: t0}, t0)
	var none *verifiedCache
	none.put(&k, cacheEntry{until: t0.Add(time.Hour)}, t0)
	if _, ok := none.get(&k, t0); ok || c.len() != 0 {
		t.Fatal("stored what it should not")
	}
}

func TestCacheUntil(t *testing.T) {
	tests := []struct {
		name   string
		expiry time.Time
		maxTTL time.Duration
		want   time.Time
	}{
		{"expiry first", t0.Add(time.Minute), time.Hour, t0.Add(time.Minute)},
		{"max ttl first", t0.Add(time.Hour), time.Minute, t0.Add(time.Minute)},
		{"no expiry", time.Time{}, time.Minute, t0.Add(time.Minute)},
	}
	for _, tt := range tests {
		if got := cacheUntil(t0, tt.expiry, tt.maxTTL); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestVerifiedCacheConcurrent(t *testing.T) {
	c := newVerifiedCache(128)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := keyOf(strconv.Itoa(g*10000 + i%300))
				if e, ok := c.get(&k, t0); ok && e.principal.Subject != strconv.Itoa(g*10000+i%300) {
					t.Errorf("wrong entry for key")
					return
				}
				c.put(&k, cacheEntry{principal: Principal{Subject: strconv.Itoa(g*10000 + i%300)}, until: t0.Add(time.Hour)}, t0)
			}
		})
	}
	wg.Wait()
	if n := c.len(); n > 128+cacheShards {
		t.Fatalf("len %d over bound", n)
	}
}
