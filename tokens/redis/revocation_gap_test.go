package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/tokens/redis"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// TestRevocationStoreGapEmptiedLog: a log trimmed to nothing after entries
// past the reader's position were added has no first entry to compare with
// the position; the lost entries must still be a gap (else a replica never
// learns of those revocations), while a reader that saw everything has none.
func TestRevocationStoreGapEmptiedLog(t *testing.T) {
	srv := redistest.Start(t)
	st := redis.NewRevocationStore(newClient(t, srv.Addr), redis.RevocationOptions{})
	ctx := context.Background()
	now := time.Now()
	rev := func(id string) {
		t.Helper()
		if err := st.Revoke(ctx, now, revocation.Record{Kind: revocation.KindJTI, ID: id, At: now.Add(time.Hour).Unix()}); err != nil {
			t.Fatal(err)
		}
	}
	trim := func(args ...string) {
		t.Helper()
		if _, err := srv.Do(append([]string{"XTRIM", st.Keys()[3]}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	rev("a")
	_, seen, err := st.Read(ctx, "0-0", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	rev("b")
	_, behind, err := st.Read(ctx, seen, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	rev("c")
	for _, give := range [][]string{{"MAXLEN", "0"}, {"MINID", "99999999999999-0"}} {
		trim(give...)
		if _, _, err := st.Read(ctx, seen, time.Millisecond); !errors.Is(err, revocation.ErrGap) {
			t.Errorf("XTRIM %v, reader two entries behind: err %v, want ErrGap", give, err)
		}
		if _, _, err := st.Read(ctx, behind, time.Millisecond); !errors.Is(err, revocation.ErrGap) {
			t.Errorf("XTRIM %v, reader one entry behind: err %v, want ErrGap", give, err)
		}
	}
	// A reader at the end of the emptied log (after its snapshot) lost
	// nothing: no reload loop.
	cur, err := st.Snapshot(ctx, now, func(revocation.Record) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Read(ctx, cur, time.Millisecond); err != nil {
		t.Fatalf("Read at the end of an emptied log: %v, want none", err)
	}
}
