package cli

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// A credential named "-" is read from standard input, so an operator
// need not leave it in ps output or shell history.
func TestSecretsFromStdin(t *testing.T) {
	for _, tc := range []struct {
		name           string
		token, session string
		in             string
		wantToken      string
		wantSession    string
		wantErr        string
	}{
		{name: "no dash, stdin untouched", token: "a.b.c", in: "ignored\n", wantToken: "a.b.c"},
		{name: "token from stdin", token: "-", in: "x.y.z\n", wantToken: "x.y.z"},
		{name: "CRLF and later lines dropped", session: "-", in: "s3cr3t\r\nsecond\n", wantSession: "s3cr3t"},
		{name: "no newline", session: "-", in: "s3cr3t", wantSession: "s3cr3t"},
		{name: "empty", token: "-", in: "", wantErr: "standard input is empty"},
		{name: "empty first line", token: "-", in: "\nx\n", wantErr: "standard input is empty"},
		{name: "two dashes", token: "-", session: "-", in: "x\n", wantErr: "only one flag"},
		{name: "too large", token: "-", in: strings.Repeat("a", maxSecretInput+1), wantErr: "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, session := tc.token, tc.session
			err := secretsFromStdin(strings.NewReader(tc.in), &token, &session)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "x.y.z") || strings.Contains(err.Error(), "aaaa") {
					t.Fatalf("error quotes the input: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if token != tc.wantToken || session != tc.wantSession {
				t.Fatalf("token %q session %q, want %q %q", token, session, tc.wantToken, tc.wantSession)
			}
		})
	}
	token := "-"
	if err := secretsFromStdin(iotest.ErrReader(iotest.ErrTimeout), &token); err == nil {
		t.Fatal("a failed read was accepted")
	}
}

// A malformed digest is refused even when another credential flag is
// well formed: it is never dropped while the other is revoked.
func TestRevokeMalformedDigestWithAnother(t *testing.T) {
	good := strings.Repeat("ab", 32)
	for _, args := range [][]string{
		{"--session-sha256", "xyz", "--api-key-sha256", good},
		{"--session-sha256", good, "--api-key-sha256", "xyz"},
		{"--api-key-sha256", "xyz"},
	} {
		err := revoke(context.Background(), append([]string{"--redis", "127.0.0.1:1"}, args...), io.Discard)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "not a hex SHA-256") {
			t.Errorf("%v: err = %v, want a usage error naming the bad digest", args, err)
		}
	}
}
