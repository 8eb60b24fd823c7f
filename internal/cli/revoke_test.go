package cli

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/tokens"
	tokensredis "github.com/ext-authz/ext-authz/tokens/redis"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// tokenCmd runs `ext-authz token ARGS` and returns stdout and the exit
// status.
func tokenCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	err := Token(context.Background(), args, &out)
	return out.String(), ExitCode(err)
}

func TestTokenRevokeAndStatus(t *testing.T) {
	rs := redistest.Start(t)
	r := []string{"--redis", rs.Addr}
	now := time.Now()
	ticket := mintCmd(t, "--kind", "udb-ticket", "--key-file", quickstartKeys+"ticket-hs256.key", "--kid", "dev-1", "--subject", "u-1")[0]
	other := mintCmd(t, "--kind", "udb-ticket", "--key-file", quickstartKeys+"ticket-hs256.key", "--kid", "dev-1", "--subject", "u-2", "--app", "shop")[0]

	steps := []struct {
		name     string
		give     []string
		wantCode int
		wantOut  string
	}{
		{"ticket accepted before", append([]string{"status", "--token", ticket}, r...), ExitOK, "not revoked: no record names it; no subject epoch"},
		{"revoke the ticket", append([]string{"revoke", "--token", ticket}, r...), ExitOK, "revoked: ticket sha256:"},
		{"ticket revoked", append([]string{"status", "--token", ticket}, r...), ExitUnauth, "revoked: the ticket record names it"},
		{"other ticket untouched", append([]string{"status", "--token", other}, r...), ExitOK, "not revoked"},
		{"log u-2 out of shop", append([]string{"revoke", "--subject", "u-2", "--app", "shop", "--before", strconv.FormatInt(now.Unix()+5, 10)}, r...), ExitOK, "subject u-2, app shop: credentials issued before"},
		{"u-2's ticket revoked by the epoch", append([]string{"status", "--token", other}, r...), ExitUnauth, "revoked: issued at"},
		{"u-2 in another app", append([]string{"status", "--subject", "u-2", "--app", "blog", "--issued-at", "1"}, r...), ExitOK, "not revoked"},
		{"revoke a jti", append([]string{"revoke", "--jti", "j-1", "--exp", now.Add(time.Hour).UTC().Format(time.RFC3339)}, r...), ExitOK, "revoked: jti j-1 (record kept until"},
		{"jti status", append([]string{"status", "--jti", "j-1"}, r...), ExitUnauth, "revoked: the jti record names it"},
		{"revoke a session", append([]string{"revoke", "--session", "sess_0123456789abcdef"}, r...), ExitOK, "revoked: session "},
		{"session by digest", append([]string{"status", "--session-sha256", tokens.HashAPIKey("sess_0123456789abcdef")}, r...), ExitUnauth, "the session record"},
		{"revoke an API key", append([]string{"revoke", "--api-key-sha256", tokens.HashAPIKey("key-1")}, r...), ExitOK, "record kept until removed"},
		{"API key status", append([]string{"status", "--api-key-sha256", strings.ToUpper(tokens.HashAPIKey("key-1"))}, r...), ExitUnauth, "the api-key record"},
		// Mistakes are usage errors, before Redis is asked.
		{"jti without exp", append([]string{"revoke", "--jti", "j"}, r...), ExitUsage, ""},
		{"exp in the past", append([]string{"revoke", "--jti", "j", "--exp", "1000"}, r...), ExitUsage, ""},
		{"two credentials", append([]string{"revoke", "--jti", "j", "--sid", "s", "--exp", "9999999999"}, r...), ExitUsage, ""},
		{"before without subject", append([]string{"revoke", "--jti", "j", "--exp", "9999999999", "--before", "1"}, r...), ExitUsage, ""},
		{"bad digest", append([]string{"revoke", "--api-key-sha256", "abc"}, r...), ExitUsage, ""},
		{"bad time", append([]string{"revoke", "--subject", "s", "--before", "yesterday"}, r...), ExitUsage, ""},
		{"not a token", append([]string{"status", "--token", "opaque"}, r...), ExitUsage, ""},
		{"no redis", []string{"revoke", "--subject", "s"}, ExitUsage, ""},
		{"nothing named", append([]string{"status"}, r...), ExitUsage, ""},
	}
	for _, s := range steps {
		out, code := tokenCmd(t, s.give...)
		if code != s.wantCode || !strings.Contains(out, s.wantOut) {
			t.Errorf("%s: exit %d, output %q; want exit %d with %q", s.name, code, out, s.wantCode, s.wantOut)
		}
	}
	// The service reads what the CLI wrote: a List over the same Redis
	// makes the ticket verifier refuse the revoked ticket.
	st, closeFn := tokensredis.DialRevocationStore(tokensredis.Target{Addrs: []string{rs.Addr}}, tokensredis.RevocationOptions{})
	defer func() { _ = closeFn() }()
	list := revocation.New(st, revocation.Options{})
	v, err := tokens.NewTicketVerifier(tokens.TicketConfig{Keys: []tokens.TicketKeyConfig{{ID: "dev-1", File: quickstartKeys + "ticket-hs256.key"}}}, tokens.Options{Revocations: list})
	if err != nil {
		t.Fatal(err)
	}
	// No Run: before its first load the List asks Redis per Check.
	if _, err := v.Verify(context.Background(), ticket); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("service view of the revoked ticket: %v", err)
	}
	if _, err := v.Verify(context.Background(), mintCmd(t, "--kind", "udb-ticket", "--key-file", quickstartKeys+"ticket-hs256.key", "--kid", "dev-1", "--subject", "u-3")[0]); err != nil {
		t.Errorf("service view of a fresh ticket: %v", err)
	}
}

// FuzzReadToken: any --token is read without a panic, as a JWT or a
// ticket or refused; a ticket's id is its jti or the digest of its
// payload, never anything of its signature.
func FuzzReadToken(f *testing.F) {
	f.Add("udbt1.k1.eyJ1aWQiOiJ1In0.sig")
	f.Add("udbt1.k1.eyJ1aWQiOiJ1IiwianRpIjoidC0xIn0.sig")
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIiwianRpIjoiaiJ9.c2ln")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := readToken(tok)
		if err != nil {
			return
		}
		switch c.kind {
		case "jwt":
		case "udb-ticket":
			parts := strings.Split(tok, ".")
			if strings.HasPrefix(c.id, "sha256:") && c.id != tokens.TicketID("", parts[2]) {
				t.Fatalf("ticket id %q of %q is not its payload digest", c.id, tok)
			}
			parts[3] = "other-signature"
			if c2, err := readToken(strings.Join(parts, ".")); err != nil || c2.id != c.id {
				t.Fatalf("the signature changed the ticket id: %q -> %q (%v)", c.id, c2.id, err)
			}
		default:
			t.Fatalf("kind %q", c.kind)
		}
	})
}
