package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ext-authz/ext-authz/tokens"
)

const tokenUsage = `usage: ext-authz token mint --kind udb-ticket|jwt --key-file FILE [flags]

Mints development and load-test tokens, one per line on stdout. Production
tokens come from the user database and the identity providers.`

// tokenCommand runs `ext-authz token mint ...`.
func tokenCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "mint" {
		return &usageError{tokenUsage}
	}
	fs := flag.NewFlagSet("token mint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, tokenUsage)
		fs.PrintDefaults()
	}
	kind := fs.String("kind", "", "token kind: udb-ticket or jwt")
	keyFile := fs.String("key-file", "", "signing key: base64 secret (HS256) or PEM private key")
	kid := fs.String("kid", "", "key id (required for udb-ticket)")
	alg := fs.String("alg", "", "algorithm; udb-ticket: HS256 (default) or EdDSA; jwt: from the key, or HS256/RS384/PS256/...")
	count := fs.Int("count", 1, "number of tokens, each for a distinct user")
	subject := fs.String("subject", "", "user id / sub (only with --count 1)")
	prefix := fs.String("user-prefix", "user-", "user ids are PREFIX1..PREFIXn when --subject is not set")
	app := fs.String("app", "", "app id (udb-ticket app, jwt azp)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	issuer := fs.String("issuer", "", "jwt iss (required for jwt)")
	audience := fs.String("audience", "", "jwt aud (comma-separated for several)")
	scope := fs.String("scope", "", "space-separated scopes")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err.Error()}
	}
	switch {
	case fs.NArg() > 0:
		return &usageError{fmt.Sprintf("token mint: unexpected argument %q", fs.Arg(0))}
	case *keyFile == "":
		return &usageError{"token mint: --key-file is required"}
	case *count < 1:
		return &usageError{"token mint: --count must be at least 1"}
	case *subject != "" && *count > 1:
		return &usageError{"token mint: --subject names one user; use --user-prefix with --count"}
	case *ttl <= 0:
		return &usageError{"token mint: --ttl must be positive"}
	}
	user := func(i int) string {
		if *subject != "" {
			return *subject
		}
		return *prefix + strconv.Itoa(i)
	}
	now := time.Now().Truncate(time.Second)
	var sign func(i int) (string, error)
	switch *kind {
	case "udb-ticket":
		if *kid == "" {
			return &usageError{"token mint: --kid is required for udb-ticket"}
		}
		a := *alg
		if a == "" {
			a = tokens.TicketHS256
		}
		s, err := tokens.NewTicketSigner(*kid, a, *keyFile)
		if err != nil {
			return err
		}
		sign = func(i int) (string, error) {
			return s.Sign(tokens.TicketClaims{
				UserID: user(i), AppID: *app, IssuedAt: now, Expiry: now.Add(*ttl), Scopes: strings.Fields(*scope),
			})
		}
	case "jwt":
		if *issuer == "" {
			return &usageError{"token mint: --issuer is required for jwt"}
		}
		s, err := tokens.NewJWTSigner(*keyFile, *kid, *alg)
		if err != nil {
			return err
		}
		sign = func(i int) (string, error) {
			c := map[string]any{
				"iss": *issuer, "sub": user(i),
				"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(*ttl).Unix(),
			}
			if auds := strings.Split(*audience, ","); *audience != "" {
				if len(auds) == 1 {
					c["aud"] = auds[0]
				} else {
					c["aud"] = auds
				}
			}
			if *app != "" {
				c["azp"] = *app
			}
			if *scope != "" {
				c["scope"] = *scope
			}
			return s.Sign(c)
		}
	default:
		return &usageError{fmt.Sprintf("token mint: --kind must be udb-ticket or jwt, not %q", *kind)}
	}
	for i := 1; i <= *count; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		tok, err := sign(i)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(stdout, tok+"\n"); err != nil {
			return err
		}
	}
	return nil
}
