package cli

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ext-authz/ext-authz/tokens"
	tokensredis "github.com/ext-authz/ext-authz/tokens/redis"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

const revokeUsage = `usage: ext-authz token revoke --redis ADDR[,ADDR...] WHAT [--exp T]

WHAT is one of:
  --subject S [--before T] [--app A]   every credential of S issued before T
                                       (default: the next second, so all
                                       issued up to now), for all apps or app A
  --jti J --exp T                      one JWT, by its jti
  --sid S --exp T                      every credential carrying sid S
  --ticket ID --exp T                  one signed ticket, by its id (its jti
                                       member, or sha256:<hex> of its payload:
                                       'token status --token TICKET' prints it)
  --token TOKEN                        a JWT or ticket: its jti (or ticket id)
                                       and exp are read from it (not verified)
  --session TOKEN | --session-sha256 HEX   one session (default --exp: now +
                                       --retention)
  --api-key-sha256 HEX                 one API key, as in the keys file
                                       (default: until it is removed)

TOKEN may be -: the credential is read from the first line of standard
input, so it is not left in ps output or shell history.

T is RFC 3339 (2026-11-21T12:00:00Z) or Unix seconds. The record is kept
until T (the credential's own exp); subject epochs for --retention. Every
replica following the revocation log applies it within a second.`

const statusUsage = `usage: ext-authz token status --redis ADDR[,ADDR...] WHAT

WHAT is --token TOKEN (a JWT or signed ticket, claims read without
verifying the signature), --session TOKEN, --session-sha256 HEX,
--api-key-sha256 HEX, or any of --jti J, --sid S, --ticket ID together with
--subject S [--app A] [--issued-at T].

TOKEN may be -: read from the first line of standard input.

Prints whether revocation lets the credential through and why: the record
that revokes it, or that none does. Exit status 0: not revoked; 3: revoked
(or, for --token, expired).
The signature and the rest of the token are checked by ext-authz itself
('ext-authz check' against a running service).`

// redisFlags are the connection flags of revoke and status.
type redisFlags struct {
	addrs, prefix, passwordFile, username *string
	cluster                               *bool
	retention                             *time.Duration
}

func addRedisFlags(fs *flag.FlagSet) *redisFlags {
	return &redisFlags{
		addrs:        fs.String("redis", "", "Redis address(es), comma-separated (required)"),
		cluster:      fs.Bool("cluster", false, "the addresses are Redis Cluster seed nodes (implied by several addresses)"),
		prefix:       fs.String("key-prefix", tokensredis.DefaultRevocationPrefix, "revocation.key_prefix of the service"),
		username:     fs.String("username", "", "Redis ACL user name"),
		passwordFile: fs.String("password-file", "", "file holding the Redis password"),
		retention:    fs.Duration("retention", revocation.DefaultRetention, "revocation.retention: how long a subject epoch is kept"),
	}
}

func (r *redisFlags) store() (*tokensredis.RevocationStore, func(), error) {
	if *r.addrs == "" {
		return nil, nil, errors.New("--redis is required")
	}
	var password string
	if *r.passwordFile != "" {
		b, err := os.ReadFile(*r.passwordFile)
		if err != nil {
			return nil, nil, err
		}
		password = strings.TrimSpace(string(b))
	}
	st, closeFn := tokensredis.DialRevocationStore(
		tokensredis.Target{Addrs: strings.Split(*r.addrs, ","), Cluster: *r.cluster, Username: *r.username, Password: password},
		tokensredis.RevocationOptions{Prefix: *r.prefix, Retention: *r.retention})
	return st, func() { _ = closeFn() }, nil
}

// parseTime reads RFC 3339 or Unix seconds.
func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor Unix seconds", s)
	}
	return t, nil
}

func parseDigest(s string) (string, error) {
	b, err := hex.DecodeString(strings.ToLower(s))
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q is not a hex SHA-256 digest (64 hex digits)", s)
	}
	return string(b), nil
}

// credentialDigest is the record id of a session token or API key: the
// SHA-256 of raw when given, else hexSum decoded; "" when neither is.
func credentialDigest(raw, hexSum string) (string, error) {
	switch {
	case raw != "":
		return digestOf(raw), nil
	case hexSum != "":
		return parseDigest(hexSum)
	}
	return "", nil
}

// parseCredentialFlags parses the flags of revoke and status, refuses
// positional arguments, and reads the one credential flag given as "-"
// from standard input (secretsFromStdin).
func parseCredentialFlags(fs *flag.FlagSet, usage string, args []string, stdout io.Writer, secrets ...*string) error {
	if err := ParseFlags(fs, usage, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if err := secretsFromStdin(os.Stdin, secrets...); err != nil {
		return usageError(fs, err.Error())
	}
	return nil
}

// usageError is a usage error of the command fs parses.
func usageError(fs *flag.FlagSet, msg string) error {
	return &UsageError{Msg: fs.Name() + ": " + msg, Help: Hint(fs.Name())}
}

func digestOf(token string) string {
	d := sha256.Sum256([]byte(token))
	return string(d[:])
}

// tokenClaims are the revocation-relevant claims of a JWT or signed
// ticket, read without verifying it.
type tokenClaims struct {
	kind     string // "jwt" or "udb-ticket"
	id       string // the JWT's jti, or the ticket id
	sid      string
	subject  string
	app      string
	iat, exp int64
	hasIat   bool
}

func readToken(tok string) (tokenClaims, error) {
	parts := strings.Split(tok, ".")
	var c tokenClaims
	var payload string
	switch {
	case len(parts) == 4 && parts[0] == tokens.TicketPrefix:
		c.kind, payload = "udb-ticket", parts[2]
	case len(parts) == 3:
		c.kind, payload = "jwt", parts[1]
	default:
		return c, errors.New("--token: not a JWT or signed ticket (sessions: --session)")
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	var m map[string]any
	if err == nil {
		err = json.Unmarshal(raw, &m)
	}
	if err != nil || m == nil {
		return c, errors.New("--token: its claims are not base64url JSON")
	}
	str := func(k string) string { s, _ := m[k].(string); return s }
	num := func(k string) (int64, bool) { f, ok := m[k].(float64); return int64(f), ok }
	c.sid = str("sid")
	c.iat, c.hasIat = num("iat")
	c.exp, _ = num("exp")
	if c.kind == "jwt" {
		c.id, c.subject, c.app = str("jti"), str("sub"), str("azp")
		if c.app == "" {
			c.app = str("client_id")
		}
	} else {
		c.id, c.subject, c.app = tokens.TicketID(str("jti"), payload), str("uid"), str("app")
	}
	return c, nil
}

func (c *tokenClaims) idKind() revocation.Kind {
	if c.kind == "jwt" {
		return revocation.KindJTI
	}
	return revocation.KindTicket
}

// revoke runs `ext-authz token revoke`.
func revoke(ctx context.Context, args []string, stdout io.Writer) error {
	fs := NewFlags("token revoke")
	rf := addRedisFlags(fs)
	subject := fs.String("subject", "", "revoke every credential of this subject issued before --before")
	before := fs.String("before", "", "subject epoch (default: the next second: everything issued up to now)")
	app := fs.String("app", "", "narrow a subject epoch to one app")
	jti := fs.String("jti", "", "a JWT's jti")
	sid := fs.String("sid", "", "a sid claim")
	ticket := fs.String("ticket", "", "a signed ticket's id")
	token := fs.String("token", "", "a JWT or signed ticket to revoke by its id (- reads it from standard input)")
	session := fs.String("session", "", "a session token (- reads it from standard input)")
	sessionSum := fs.String("session-sha256", "", "a session token's hex SHA-256")
	apiKeySum := fs.String("api-key-sha256", "", "an API key's hex SHA-256 (the keys file's sha256)")
	exp := fs.String("exp", "", "when the record may go: the credential's exp")
	if err := parseCredentialFlags(fs, revokeUsage, args, stdout, token, session); err != nil {
		return err
	}
	usageErr := func(msg string) error { return usageError(fs, msg) }
	now := time.Now()
	var at int64
	if *exp != "" {
		t, err := parseTime(*exp)
		if err != nil {
			return usageErr("--exp: " + err.Error())
		}
		at = t.Unix()
	}
	var r revocation.Record
	n := 0
	set := func(k revocation.Kind, id string) {
		if id != "" {
			n++
			r.Kind, r.ID = k, id
		}
	}
	set(revocation.KindSubject, *subject)
	set(revocation.KindJTI, *jti)
	set(revocation.KindSID, *sid)
	set(revocation.KindTicket, *ticket)
	if *token != "" {
		c, err := readToken(*token)
		if err != nil {
			return usageErr(err.Error())
		}
		if c.kind == "jwt" && c.id == "" {
			return usageErr("--token: the JWT has no jti; revoke it by --sid or --subject")
		}
		set(c.idKind(), c.id)
		if at == 0 {
			at = c.exp
		}
	}
	sessionID, serr := credentialDigest(*session, *sessionSum)
	apiKeyID, aerr := credentialDigest("", *apiKeySum)
	set(revocation.KindSession, sessionID)
	set(revocation.KindAPIKey, apiKeyID)
	err := errors.Join(serr, aerr)
	if *session != "" && *sessionSum != "" {
		n++
	}
	switch {
	case err != nil:
		return usageErr(err.Error())
	case n != 1:
		return usageErr("name exactly one of --subject, --jti, --sid, --ticket, --token, --session, --session-sha256, --api-key-sha256")
	case (*before != "" || *app != "") && r.Kind != revocation.KindSubject:
		return usageErr("--before and --app go with --subject")
	}
	switch r.Kind {
	case revocation.KindSubject:
		// Default: the second after now. iat is in whole seconds and one
		// at the epoch is accepted, so an epoch of now (truncated) would
		// spare what was issued earlier in this second; a login in the
		// rest of it is refused instead (fail closed).
		epoch := now.Truncate(time.Second).Add(time.Second)
		if *before != "" {
			if epoch, err = parseTime(*before); err != nil {
				return usageErr("--before: " + err.Error())
			}
		}
		r.At, r.App = epoch.Unix(), *app
	case revocation.KindJTI, revocation.KindSID, revocation.KindTicket:
		if at == 0 {
			return usageErr("--exp is required: the record lives until the credential's own exp")
		}
		r.At = at
	case revocation.KindSession:
		r.At = at
		if r.At == 0 {
			// The user database sets a session's lifetime (often
			// weeks): kept as long as an epoch, which is at least
			// the longest credential lifetime, not a guess after
			// which the revoked session would be accepted again.
			r.At = now.Add(*rf.retention).Unix()
		}
	case revocation.KindAPIKey:
		r.At = at // 0: never
	}
	if r.Kind != revocation.KindSubject && r.At != 0 && r.At < now.Unix() {
		return usageErr("--exp is in the past: the credential has expired already")
	}
	st, closeFn, err := rf.store()
	if err != nil {
		return usageErr(err.Error())
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := st.Revoke(ctx, now, r); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "revoked: %s\n", describe(r))
	return err
}

// describe names a record without the credential: digests as hex.
func describe(r revocation.Record) string {
	id := r.ID
	if r.Kind.Digest() {
		id = hex.EncodeToString([]byte(id))
	}
	switch {
	case r.Kind == revocation.KindSubject && r.App != "":
		return fmt.Sprintf("subject %s, app %s: credentials issued before %s", id, r.App, fmtTime(r.At))
	case r.Kind == revocation.KindSubject:
		return fmt.Sprintf("subject %s: credentials issued before %s", id, fmtTime(r.At))
	case r.At == 0:
		return fmt.Sprintf("%s %s (record kept until removed)", r.Kind, id)
	}
	return fmt.Sprintf("%s %s (record kept until %s)", r.Kind, id, fmtTime(r.At))
}

func fmtTime(sec int64) string { return time.Unix(sec, 0).UTC().Format(time.RFC3339) }

// status runs `ext-authz token status`.
func status(ctx context.Context, args []string, stdout io.Writer) error {
	fs := NewFlags("token status")
	rf := addRedisFlags(fs)
	token := fs.String("token", "", "a JWT or signed ticket (- reads it from standard input)")
	session := fs.String("session", "", "a session token (- reads it from standard input)")
	sessionSum := fs.String("session-sha256", "", "a session token's hex SHA-256")
	apiKeySum := fs.String("api-key-sha256", "", "an API key's hex SHA-256")
	jti := fs.String("jti", "", "a JWT's jti")
	sid := fs.String("sid", "", "a sid claim")
	ticket := fs.String("ticket", "", "a signed ticket's id")
	subject := fs.String("subject", "", "the credential's subject")
	app := fs.String("app", "", "the credential's app")
	issuedAt := fs.String("issued-at", "", "the credential's iat (without it, any subject epoch revokes it)")
	if err := parseCredentialFlags(fs, statusUsage, args, stdout, token, session); err != nil {
		return err
	}
	usageErr := func(msg string) error { return usageError(fs, msg) }
	q := revocation.Query{Subject: *subject, App: *app}
	q.IDs[revocation.KindJTI], q.IDs[revocation.KindSID], q.IDs[revocation.KindTicket] = *jti, *sid, *ticket
	var desc []string
	var exp int64
	if *issuedAt != "" {
		t, err := parseTime(*issuedAt)
		if err != nil {
			return usageErr("--issued-at: " + err.Error())
		}
		q.IssuedAt, q.HasIssuedAt = t.Unix(), true
	}
	if *token != "" {
		c, err := readToken(*token)
		if err != nil {
			return usageErr(err.Error())
		}
		q.IDs[c.idKind()], q.IDs[revocation.KindSID] = c.id, c.sid
		q.Subject, q.App, q.IssuedAt, q.HasIssuedAt = c.subject, c.app, c.iat, c.hasIat
		exp = c.exp
		desc = append(desc, c.kind)
		if c.kind == "udb-ticket" {
			desc = append(desc, "ticket id "+c.id)
		}
	}
	for _, d := range []struct {
		kind     revocation.Kind
		raw, sum string
	}{{revocation.KindSession, *session, *sessionSum}, {revocation.KindAPIKey, "", *apiKeySum}} {
		id, err := credentialDigest(d.raw, d.sum)
		if err != nil {
			return usageErr(err.Error())
		}
		if id != "" {
			q.IDs[d.kind] = id
		}
	}
	q.NoEpoch = q.IDs[revocation.KindAPIKey] != ""
	named := q.Subject != ""
	for k, id := range q.IDs {
		if id != "" {
			named = true
			v := id
			if revocation.Kind(k).Digest() {
				v = hex.EncodeToString([]byte(id))
			}
			desc = append(desc, revocation.Kind(k).String()+" "+v)
		}
	}
	if !named {
		return usageErr("name a credential: --token, --session, --session-sha256, --api-key-sha256, --jti, --sid, --ticket or --subject")
	}
	if q.Subject != "" {
		d := "subject " + q.Subject
		if q.App != "" {
			d += ", app " + q.App
		}
		if q.HasIssuedAt {
			d += ", issued at " + fmtTime(q.IssuedAt)
		}
		desc = append(desc, d)
	}
	st, closeFn, err := rf.store()
	if err != nil {
		return usageErr(err.Error())
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	f, err := st.Lookup(ctx, &q)
	if err != nil {
		return err
	}
	now := time.Now()
	fmt.Fprintf(stdout, "credential: %s\n", strings.Join(desc, "; "))
	epochNote := "no subject epoch"
	if f.Epoch != 0 {
		epochNote = "subject epoch " + fmtTime(f.Epoch)
	}
	switch {
	case f.Cred:
		fmt.Fprintf(stdout, "revoked: the %s record names it\n", f.Kind)
		return &ExitError{Code: ExitUnauth}
	case !q.NoEpoch && q.Subject != "" && f.Epoch != 0 && f.Epoch >= now.Add(-*rf.retention).Unix() && (!q.HasIssuedAt || q.IssuedAt < f.Epoch):
		if q.HasIssuedAt {
			fmt.Fprintf(stdout, "revoked: issued at %s, before the %s\n", fmtTime(q.IssuedAt), epochNote)
		} else {
			fmt.Fprintf(stdout, "revoked: no issue time, and the subject has an epoch (%s)\n", epochNote)
		}
		return &ExitError{Code: ExitUnauth}
	case exp != 0 && exp <= now.Unix():
		fmt.Fprintf(stdout, "not revoked, but expired at %s\n", fmtTime(exp))
		return &ExitError{Code: ExitUnauth}
	}
	_, err = fmt.Fprintf(stdout, "not revoked: no record names it; %s\n", epochNote)
	return err
}

// maxSecretInput bounds a credential read from standard input.
const maxSecretInput = 64 << 10

// secretsFromStdin replaces the one flag value that is "-" with the first
// line of in, so that a credential need not be written on the command line
// (where ps, /proc/PID/cmdline and shell history keep it).
func secretsFromStdin(in io.Reader, flags ...*string) error {
	var dash *string
	for _, f := range flags {
		if *f != "-" {
			continue
		}
		if dash != nil {
			return errors.New("only one flag can read standard input (-)")
		}
		dash = f
	}
	if dash == nil {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(in, maxSecretInput+1))
	if err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	if len(b) > maxSecretInput {
		return fmt.Errorf("standard input holds more than %d bytes", maxSecretInput)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return errors.New("standard input is empty (want the credential on its first line)")
	}
	*dash = line
	return nil
}
