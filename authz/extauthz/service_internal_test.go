package extauthz

import (
	"context"
	"testing"

	"google.golang.org/grpc/mem"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
)

// TestResponseBufferIsPooled: the lean answer is a buffer grpc-go gives
// back to responseBuffers once written. mem.NewBuffer turns a buffer at or
// below its pooling threshold into a plain slice it never frees, and the
// pool then allocated a fresh buffer for every Check.
func TestResponseBufferIsPooled(t *testing.T) {
	p, err := authztest.GoldenPipeline()
	if err != nil {
		t.Fatal(err)
	}
	s := New(p, Options{})
	for _, c := range []*checkCall{
		{req: authz.Request{Method: "GET", Host: "api.example.com", Path: "/health"}},
		{unreadable: UnreadableMalformed},
	} {
		b := s.checkWire(context.Background(), c)
		if _, plain := b.(mem.SliceBuffer); plain {
			t.Fatalf("answer (%d bytes) is a plain slice: never returned to the pool", b.Len())
		}
		if b.Len() == 0 {
			t.Fatal("empty answer")
		}
		if c.dec.ID == "" {
			t.Fatal("the decision was not kept in the call")
		}
		b.Free()
	}
}
