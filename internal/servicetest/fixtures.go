package servicetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/tokens"
)

// The dev API keys of the base config.
const (
	KeyAlice = "e2e-key-alice" // subject alice, scope read, claim team=payments
	KeyAdmin = "e2e-key-admin" // subject admin, scopes read and admin
)

// KeysFile writes the API key file of KeyAlice and KeyAdmin into dir.
func KeysFile(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "keys.yaml")
	body := fmt.Sprintf(`keys:
  - subject: alice
    sha256: %s
    scopes: [read]
    claims: {team: payments}
  - subject: admin
    sha256: %s
    scopes: [read, admin]
`, tokens.HashAPIKey(KeyAlice), tokens.HashAPIKey(KeyAdmin))
	WriteFile(t, path, body)
	return path
}

// BaseConfig is a complete config on free loopback ports with the API
// keys in keys; extraRules are inserted before the admin and api rules.
func BaseConfig(keys, extraRules string) string {
	return `server:
  grpc_address: "127.0.0.1:0"
  drain_delay: 100ms
  drain_timeout: 5s
  reload_interval: 50ms
admin:
  address: "127.0.0.1:0"
authenticators:
  - name: keys
    source: {header: x-api-key}
    challenge_scheme: ApiKey
    strip_credential: true
    api_key: {file: "` + keys + `"}
policy:
  realm: e2e
  identity_headers:
    claims: {team: x-auth-team}
  rules:
    - name: health
      match: {path: {exact: /healthz}}
      action: allow
` + extraRules + `    - name: admin
      match: {path: {prefix: /admin/}}
      action: authenticate
      authenticators: [keys]
      require: {scopes: [admin]}
    - name: api
      match: {hosts: ["*.example.com"], path: {prefix: /api/}}
      action: authenticate
      authenticators: [keys]
`
}

// WriteFile writes body to path or fails the test.
func WriteFile(t testing.TB, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// QuickstartKeys is the directory of the quickstart's development keys.
func QuickstartKeys() string { return filepath.Join(Root(), "examples", "quickstart", "keys") + "/" }

// MintJWT is a quickstart JWT (issuer https://issuer.quickstart.example)
// for subject and audience, signed with keyFile ("jwt-rs256.pem" or
// "jwt-es256.pem" in QuickstartKeys) under kid, as `ext-authz token mint
// --kind jwt` makes it.
func MintJWT(t testing.TB, keyFile, kid, audience, subject string) string {
	t.Helper()
	s, err := tokens.NewJWTSigner(QuickstartKeys()+keyFile, kid, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	tok, err := s.Sign(map[string]any{"iss": "https://issuer.quickstart.example", "aud": audience, "sub": subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// MintTicket is a quickstart UDB ticket (HS256, kid dev-1) for user.
func MintTicket(t testing.TB, user string) string {
	t.Helper()
	s, err := tokens.NewTicketSigner("dev-1", tokens.TicketHS256, QuickstartKeys()+"ticket-hs256.key")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	tok, err := s.Sign(tokens.TicketClaims{UserID: user, IssuedAt: now, Expiry: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
