package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/internal/redistest"
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
