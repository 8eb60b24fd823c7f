package generation

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/tokens"
	tokensredis "github.com/ext-authz/ext-authz/tokens/redis"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

func TestRevocationConfigErrors(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	writeKeys(t, keys, []string{"alice"})
	base := "authenticators:\n  - {name: keys, source: {header: x-api-key}, api_key: {file: \"" + keys + "\"}}\npolicy: {rules: [{name: r, match: {path: {prefix: /}}, action: allow}]}\n"
	for _, tc := range []struct {
		name, give, want string
	}{
		{"without redis", "revocation: {enabled: true}\n", "revocation.enabled: needs the redis section"},
		{"hash tag in the prefix", "redis: {addrs: [\"127.0.0.1:1\"]}\nrevocation: {enabled: true, key_prefix: \"a{b}\"}\n", "revocation.key_prefix: must not contain { or }"},
		{"staleness too short", "redis: {addrs: [\"127.0.0.1:1\"]}\nrevocation: {enabled: true, max_staleness: 10ms}\n", "revocation.max_staleness: 10ms is too short"},
		{"retention too short", "redis: {addrs: [\"127.0.0.1:1\"]}\nrevocation: {enabled: true, retention: 1m}\n", "revocation.retention: 1m0s is too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(path, []byte(base+tc.give), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path, os.Getenv)
			if err == nil {
				_, err = Compile(&Env{Pool: pool.New(pool.Options{})}, cfg)
				err = cfg.Annotate(err)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "config.yaml:") {
				t.Errorf("err %v, want %q with file:line", err, tc.want)
			}
		})
	}
}

// TestRevocationShared: every verifier of a generation consults one List,
// reloads share it, and an API key is revoked without a reload.
func TestRevocationShared(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	writeKeys(t, keys, []string{"alice", "bob"})
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := "redis: {addrs: [\"" + rs.Addr + "\"]}\nrevocation: {enabled: true, max_staleness: 1s}\n" +
		"authenticators:\n  - {name: keys, source: {header: x-api-key}, api_key: {file: \"" + keys + "\"}}\n" +
		"  - {name: sessions, source: {header: x-session}, udb_session: {}}\n" +
		"policy: {rules: [{name: r, match: {path: {prefix: /}}, action: allow}]}\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	compile := compiler(t, cfgPath)
	g1 := compile()
	if g1.Revocations == nil {
		t.Fatal("no revocation list")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := g1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for g1.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", g1.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	g2 := compile()
	if g2.Revocations != g1.Revocations || g2.Auths[0].Key != g1.Auths[0].Key {
		t.Error("a reload of the same config built another list or verifier")
	}
	cli := goredis.NewClient(&goredis.Options{Addr: rs.Addr})
	defer func() { _ = cli.Close() }()
	d := sha256.Sum256([]byte("key-of-alice"))
	if err := tokensredis.NewRevocationStore(cli, tokensredis.RevocationOptions{}).Revoke(ctx, time.Now(), revocation.Record{Kind: revocation.KindAPIKey, ID: string(d[:])}); err != nil {
		t.Fatal(err)
	}
	v := g2.Auths[0].Authenticator.Verifier
	for {
		_, err := v.Verify(ctx, "key-of-alice")
		if tokens.Reason(err) == "revoked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's key not revoked: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if _, err := v.Verify(ctx, "key-of-bob"); err != nil {
		t.Errorf("bob's key: %v", err)
	}
	if d := g2.Degraded(); d != nil {
		t.Errorf("degraded: %v", d)
	}
}
