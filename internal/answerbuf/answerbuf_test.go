package answerbuf

import (
	"testing"

	"google.golang.org/grpc/mem"
)

// TestAboveGRPCPoolingThreshold: a buffer of Min capacity must be one
// grpc-go gives back to the pool, else every answer allocates afresh.
func TestAboveGRPCPoolingThreshold(t *testing.T) {
	if mem.IsBelowBufferPoolingThreshold(Min) {
		t.Fatalf("Min %d is at or below grpc-go's pooling threshold", Min)
	}
	var p Pool
	bp := p.Get(0)
	*bp = append((*bp)[:0], "answer"...)
	b := mem.NewBuffer(bp, &p)
	if _, plain := b.(mem.SliceBuffer); plain {
		t.Fatal("a fresh buffer became a plain slice: never returned to the pool")
	}
	b.Free()
}

func TestGetPut(t *testing.T) {
	var p Pool
	tests := []struct {
		name    string
		length  int
		wantCap int
	}{
		{"empty", 0, Min},
		{"small", 100, Min},
		{"larger than Min", Min + 1, Min + 1},
	}
	for _, tt := range tests {
		bp := p.Get(tt.length)
		if len(*bp) != tt.length || cap(*bp) < tt.wantCap {
			t.Errorf("%s: len %d cap %d, want len %d cap >= %d", tt.name, len(*bp), cap(*bp), tt.length, tt.wantCap)
		}
	}
	big := make([]byte, 0, Max+1)
	p.Put(&big) // dropped, not kept
	for range 8 {
		if bp := p.Get(0); cap(*bp) > Max {
			t.Fatalf("Get returned a buffer of %d bytes, over Max: Put kept it", cap(*bp))
		}
	}
}
