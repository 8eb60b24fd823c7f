package ratelimit

import "testing"

func TestOverLimitCacheBounded(t *testing.T) {
	c := newOverLimitCache(32) // 2 per shard
	for i := range 1000 {
		c.add(string(rune('a'+i%26))+string(rune(i)), 1, 100)
	}
	if n := c.len(); n > 32 {
		t.Fatalf("cache holds %d keys, bound 32", n)
	}
	// Entries of an ended window make room for a later one.
	for i := range 1000 {
		c.add(string(rune(i))+"later", 1, 200)
	}
	later := 0
	for i := range 1000 {
		if c.overLimit(string(rune(i))+"later", 1, 150) {
			later++
		}
	}
	if later == 0 {
		t.Fatal("stale entries were not replaced")
	}
	if c.overLimit(string(rune(0))+"later", 1, 200) {
		t.Fatal("entry answered at its window end")
	}
}

func TestOverLimitCacheKeyedByLimit(t *testing.T) {
	c := newOverLimitCache(100)
	c.add("k", 5, 100)
	for _, tt := range []struct {
		give uint32
		want bool
	}{{5, true}, {6, false}, {100, false}, {4, false}} {
		if got := c.overLimit("k", tt.give, 50); got != tt.want {
			t.Errorf("overLimit(k, %d) = %v, want %v", tt.give, got, tt.want)
		}
	}
}
