package cli

import (
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// TestRevokeSubjectNowCoversThisSecond: `token revoke --subject S` without
// --before logs S out of every credential issued up to now. iat is in
// whole seconds and a credential issued at the epoch T is accepted, so an
// epoch of now truncated to the second let a credential issued earlier in
// the same second (the stolen one the operator reacts to) through.
func TestRevokeSubjectNowCoversThisSecond(t *testing.T) {
	rs := redistest.Start(t)
	r := []string{"--redis", rs.Addr}
	key := []string{"--key-file", quickstartKeys + "ticket-hs256.key", "--kid", "dev-1"}
	// Start early in a second, so minting and revoking share it.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
	for _, subject := range []string{"u-same-1", "u-same-2"} {
		tok := mintCmd(t, append([]string{"--kind", "udb-ticket", "--subject", subject}, key...)...)[0]
		if out, code := tokenCmd(t, append([]string{"revoke", "--subject", subject}, r...)...); code != ExitOK {
			t.Fatalf("revoke %s: exit %d, %q", subject, code, out)
		}
		out, code := tokenCmd(t, append([]string{"status", "--token", tok}, r...)...)
		if code != ExitUnauth || !strings.Contains(out, "revoked: issued at") {
			t.Errorf("%s: ticket issued before the revocation, same second: exit %d, %q; want revoked", subject, code, out)
		}
	}
}

// TestRevokeSessionKeptForRetention: without --exp the CLI cannot know
// when a session ends (the user database sets its TTL, often weeks), so
// the record is kept as long as a subject epoch, --retention (at least the
// longest credential lifetime), not a guessed 24h after which a revoked
// long-lived session was accepted again.
func TestRevokeSessionKeptForRetention(t *testing.T) {
	rs := redistest.Start(t)
	r := []string{"--redis", rs.Addr}
	for _, c := range []struct {
		give []string
		want time.Duration
	}{
		{[]string{"--session", "sess-token-0123456789"}, revocation.DefaultRetention},
		{[]string{"--session-sha256", strings.Repeat("ab", 32), "--retention", "2160h"}, 2160 * time.Hour},
	} {
		member := "session:" + strings.Repeat("ab", 32)
		if c.give[0] == "--session" {
			member = "session:" + hex.EncodeToString([]byte(digestOf(c.give[1])))
		}
		before := time.Now()
		if out, code := tokenCmd(t, append(append([]string{"revoke"}, c.give...), r...)...); code != ExitOK {
			t.Fatalf("%v: exit %d, %q", c.give, code, out)
		}
		res, err := rs.Do("ZSCORE", "{udb:revocation}:credentials", member)
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		for _, line := range strings.Fields(res) {
			if f, err := strconv.ParseFloat(line, 64); err == nil {
				got = int64(f)
			}
		}
		if low := before.Add(c.want).Unix(); got < low || got > low+5 {
			t.Errorf("%v: record kept until %d, want about now+%s (%d)", c.give, got, c.want, low)
		}
	}
}
