package tokens

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestNoCredentialInErrorsOrLogs runs good and bad credentials through every
// verifier, with a debug-level logger and failing key sources and stores,
// and checks that no credential, nor any segment of one, appears in an
// error message or a log line.
func TestNoCredentialInErrorsOrLogs(t *testing.T) {
	log, logs := logBuffer()
	k := getKeys(t)

	tf := newTicketFixture(t)
	tf.v.cache = newVerifiedCache(0)
	good := tf.sign(t, "k1", validTicket())
	parts := strings.Split(good, ".")
	tickets := []string{
		good, tf.sign(t, "old", validTicket()), tf.sign(t, "ed", validTicket()),
		parts[0] + "." + parts[1] + "." + parts[2] + "." + strings.Repeat("A", 43),
		strings.Replace(good, ".k1.", ".unknownkid.", 1), good + "x", "udbt1.k1.bm90anNvbg." + parts[3],
	}
	var errs []error
	for _, tok := range tickets {
		_, err := tf.v.Verify(context.Background(), tok)
		errs = append(errs, err)
	}

	srv := newJWKSServer(t, nil)
	srv.set(http.StatusInternalServerError, []byte("down"))
	jv, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{
		{Issuer: testIssuer, Audiences: []string{"api"}, JWKSFile: writeFile(t, "j.json", jwksJSON(jwk("rsa", k.rsa))), JWKSURL: srv.URL, MinRefreshInterval: time.Nanosecond},
	}}, JWTOptions{Options: Options{Now: newClock().Now, Logger: log}})
	if err != nil {
		t.Fatal(err)
	}
	jwts := []string{
		mint(t, "RS256", "rsa", k.rsa, claimsAt(testIssuer)),
		mint(t, "RS256", "rsa", k.rsa2, claimsAt(testIssuer)),
		mint(t, "RS256", "other", k.rsa, claimsAt(testIssuer)), // unknown kid: refetch fails and is logged
		mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "aud", "x")),
		mint(t, "RS256", "rsa", k.rsa, withClaims(claimsAt(testIssuer), "exp", 1)),
		noneToken(claimsAt(testIssuer)),
		"eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24gYXQgYWxs.c2lnbmF0dXJlc2lnbmF0dXJl",
	}
	for _, tok := range jwts {
		_, err := jv.Verify(context.Background(), tok)
		errs = append(errs, err)
	}

	store := &memStore{records: map[string]map[string]string{}}
	sv, err := NewSessionVerifier(SessionConfig{KeyEncoding: SessionKeyPlain}, store, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sessions := []string{"plainsession_abcdefghijkl", "malformedsession_abcdefgh"}
	store.records["udb:session:malformedsession_abcdefgh"] = map[string]string{"exp": "x"}
	for _, tok := range sessions {
		_, err := sv.Verify(context.Background(), tok)
		errs = append(errs, err)
	}
	// A store whose error message includes the key (as some clients do).
	store.err = errors.New("WRONGTYPE at key udb:session:failingsession_abcdefgh")
	_, err = sv.Verify(context.Background(), "failingsession_abcdefgh")
	errs = append(errs, err)
	sessions = append(sessions, "failingsession_abcdefgh")

	if !strings.Contains(logs.String(), "jwks fetch failed") || !strings.Contains(logs.String(), "session record is malformed") {
		t.Fatalf("the test did not exercise the log paths: %s", logs)
	}
	var text strings.Builder
	for _, e := range errs {
		if e != nil {
			text.WriteString(e.Error() + "\n")
		}
	}
	text.WriteString(logs.String())
	all := text.String()
	for _, tok := range append(append(tickets, jwts...), sessions...) {
		for _, seg := range append([]string{tok}, strings.Split(tok, ".")...) {
			if len(seg) >= 8 && strings.Contains(all, seg) {
				t.Errorf("output contains (part of) a credential %q:\n%s", seg, all)
			}
		}
	}
}
