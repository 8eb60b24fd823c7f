package ratelimit

import "testing"

func TestOverLimitCacheBounded(t *testing.T) {
	c := newOverLimitCache(32) // 2 per shard
	for i := range 1000 {
		c.add(string(rune('a'+i%26))+string(rune(i)), 100)
	}
	if n := c.len(); n > 32 {
		t.Fatalf("cache holds %d keys, bound 32", n)
	}
	// Entries of an ended window make room for a later one.
	for i := range 1000 {
		c.add(string(rune(i))+"later", 200)
	}
	later := 0
	for i := range 1000 {
		if c.overLimit(string(rune(i))+"later", 150) {
			later++
		}
	}
	if later == 0 {
		t.Fatal("stale entries were not replaced")
	}
	if c.overLimit(string(rune(0))+"later", 200) {
		t.Fatal("entry answered at its window end")
	}
}
