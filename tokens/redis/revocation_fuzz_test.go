package redis

import (
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
)

// FuzzRevocationLogEntry: any log entry decodes without a panic, and one
// that decodes to a valid record is what Revoke would write for it (a
// digest in either case of hex: a writer's upper case must not drop a
// revocation).
func FuzzRevocationLogEntry(f *testing.F) {
	f.Add("jti", "j-1", "", "1795003600")
	f.Add("session", "7d90016049de674c6e1674d479c59602c6833aed3bddda1c9a8b9e9db5b23be6", "", "0")
	f.Add("subject", "u-42", "shop", "1795000000")
	f.Add("api-key", "zz", "", "-1")
	f.Add("subject", "", "", "99999999999999999999")
	f.Fuzz(func(t *testing.T, k, id, app, at string) {
		r := recordOf(map[string]any{"k": k, "id": id, "app": app, "t": at})
		if r.Validate() != nil {
			return
		}
		wantID := r.ID
		if r.Kind.Digest() {
			wantID = hex.EncodeToString([]byte(r.ID))
		}
		if r.Kind.String() != k || !strings.EqualFold(wantID, id) || r.App != app || r.At != mustInt(at) {
			t.Fatalf("entry k=%q id=%q app=%q t=%q decoded to %+v", k, id, app, at, r)
		}
	})
}

func mustInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
