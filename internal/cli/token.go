package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ext-authz/ext-authz/tokens"
)

const tokenUsage = `usage:
  ext-authz token mint --kind udb-ticket|jwt --key-file FILE --kid ID [flags]
  ext-authz token jwks --key-file PEM [--kid ID] [--alg ALG]
  ext-authz token revoke --redis ADDR (--subject S [--before T] [--app A] | --jti J --exp T | ...)
  ext-authz token status --redis ADDR (--token TOKEN | --session TOKEN | ...)

mint: development and load-test tokens; jwks: the JWK Set a jwt issuer's
jwks_file or jwks_url serves for a key; revoke: write a revocation record;
status: whether revocation lets a credential through, and why. Each takes -h.`

const mintUsage = `usage: ext-authz token mint --kind udb-ticket|jwt --key-file FILE --kid ID [flags]

Mints development and load-test tokens, one per line on stdout. Production
tokens come from the user database and the identity providers.

--kid is required: the verifier picks the key by it (a jwt without kid is
accepted only while its issuer's JWK Set holds exactly one key, so it would
break at the first key rotation). For a jwt, use the kid the JWK Set names;
'ext-authz token jwks' derives it from the key (RFC 7638 thumbprint).`

const jwksUsage = `usage: ext-authz token jwks --key-file PEM [--kid ID] [--alg ALG]

Prints the JWK Set (RFC 7517) of one public key, for a jwt issuer's
jwks_file or jwks_url. The PEM may hold a public key, a certificate or a
private key (only its public part is printed). kid defaults to the key's
RFC 7638 thumbprint, which 'token mint --kind jwt' names when --kid is
missing. --alg, when given, restricts the key to that algorithm.`

// Token runs `ext-authz token mint|jwks|revoke|status ...`.
func Token(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return &UsageError{Msg: "token needs mint, jwks, revoke or status", Help: Hint("token")}
	}
	switch args[0] {
	case "mint":
	case "jwks":
		return jwks(args[1:], stdout)
	case "revoke":
		return revoke(ctx, args[1:], stdout)
	case "status":
		return status(ctx, args[1:], stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, tokenUsage)
		return ErrHelp
	default:
		return &UsageError{Msg: fmt.Sprintf("token: unknown subcommand %q", args[0]), Help: Hint("token")}
	}
	fs := NewFlags("token mint")
	kind := fs.String("kind", "", "token kind: udb-ticket or jwt")
	keyFile := fs.String("key-file", "", "signing key: base64 secret (HS256) or PEM private key")
	kid := fs.String("kid", "", "key id the verifier selects the key by (required)")
	alg := fs.String("alg", "", "algorithm; udb-ticket: HS256 (default) or EdDSA; jwt: from the key, or HS256/RS384/PS256/...")
	count := fs.Int("count", 1, "number of tokens, each for a distinct user")
	subject := fs.String("subject", "", "user id / sub (only with --count 1)")
	prefix := fs.String("user-prefix", "user-", "user ids are PREFIX1..PREFIXn when --subject is not set")
	app := fs.String("app", "", "app id (udb-ticket app, jwt azp)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	issuer := fs.String("issuer", "", "jwt iss (required for jwt)")
	audience := fs.String("audience", "", "jwt aud (comma-separated for several)")
	scope := fs.String("scope", "", "space-separated scopes")
	if err := ParseFlags(fs, mintUsage, args[1:], stdout); err != nil {
		return err
	}
	usageErr := func(msg string) error { return &UsageError{Msg: "token mint: " + msg, Help: Hint(fs.Name())} }
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *keyFile == "":
		return usageErr("--key-file is required")
	case *count < 1:
		return usageErr("--count must be at least 1")
	case *subject != "" && *count > 1:
		return usageErr("--subject names one user; use --user-prefix with --count")
	case *ttl <= 0:
		return usageErr("--ttl must be positive")
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
			return usageErr("--kid is required for udb-ticket")
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
			return usageErr("--issuer is required for jwt")
		}
		if err := checkJWTKey(*keyFile, *kid, *alg); err != nil {
			return usageErr(err.Error())
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
		return usageErr(fmt.Sprintf("--kind must be udb-ticket or jwt, not %q", *kind))
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

// checkJWTKey explains, before signing, what would make a jwt unusable or
// unsignable: no kid (naming the one 'token jwks' derives), or an
// algorithm that does not fit the key in the file.
func checkJWTKey(keyFile, kid, alg string) error {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	if alg != "" && algFamily(alg) == "" {
		return fmt.Errorf("--alg %q is not one of RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA HS256 HS384 HS512", alg)
	}
	if strings.HasPrefix(alg, "HS") {
		if _, err := readPEMKey(data); err == nil {
			return fmt.Errorf("--alg %s needs a base64 secret, but %s holds a PEM key; omit --alg to sign with the key", alg, keyFile)
		}
		if kid == "" {
			return errors.New("--kid is required: the verifier picks the key by kid (name the kid of this secret's \"oct\" JWK)")
		}
		return nil
	}
	k, err := readPEMKey(data)
	if err != nil {
		return fmt.Errorf("%s holds no PEM key (%w); a base64 HMAC secret needs --alg HS256, HS384 or HS512", keyFile, err)
	}
	if alg != "" && !k.fits(alg) {
		return fmt.Errorf("--alg %s needs %s, but %s holds %s; use --alg %s or omit --alg", alg, algFamily(alg), keyFile, k.desc, k.alg)
	}
	if kid == "" {
		j, err := newJWK(k.pub)
		if err != nil {
			return err
		}
		return fmt.Errorf("--kid is required: the verifier picks the key by kid; for this key's JWK Set from 'ext-authz token jwks --key-file %s', use --kid %s", keyFile, j.Kid)
	}
	return nil
}

// jwks prints the JWK Set of one public key.
func jwks(args []string, stdout io.Writer) error {
	fs := NewFlags("token jwks")
	keyFile := fs.String("key-file", "", "PEM public key, certificate or private key")
	kid := fs.String("kid", "", "key id (default: the RFC 7638 thumbprint)")
	alg := fs.String("alg", "", "restrict the key to this algorithm (default: none named)")
	if err := ParseFlags(fs, jwksUsage, args, stdout); err != nil {
		return err
	}
	usageErr := func(msg string) error { return &UsageError{Msg: "token jwks: " + msg, Help: Hint(fs.Name())} }
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *keyFile == "":
		return usageErr("--key-file is required")
	}
	data, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	k, err := readPEMKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *keyFile, err)
	}
	if *alg != "" && !k.fits(*alg) {
		if algFamily(*alg) == "" {
			return usageErr(fmt.Sprintf("--alg %q is not an asymmetric JWS algorithm", *alg))
		}
		return usageErr(fmt.Sprintf("--alg %s needs %s, but %s holds %s; use --alg %s or omit --alg", *alg, algFamily(*alg), *keyFile, k.desc, k.alg))
	}
	j, err := newJWK(k.pub)
	if err != nil {
		return err
	}
	if *kid != "" {
		j.Kid = *kid
	}
	j.Alg = *alg
	out, err := jwksJSON(j)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}
