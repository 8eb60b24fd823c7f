package policytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/authz/transport"
	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/tokens"
)

// Options are Run's optional inputs; the zero value works.
type Options struct {
	// Config, when set, is the config every file runs against instead of
	// the one it names.
	Config string
	// Remap, when set, rewrites the config's file paths after the test
	// file's own paths (check-config's --map-path and --base-dir).
	Remap func(*generation.Config)
	// Getenv answers ${NAME} references the test file's env does not
	// (nil: unset).
	Getenv func(string) string
	// Verbose prints passing tests too.
	Verbose bool
	// Candidate runs the tests against the config's policy_candidate
	// instead of its policy.
	Candidate bool
	// ReadyTimeout bounds the wait for authenticators with remote keys
	// (jwks_url) to fetch them; default 10s.
	ReadyTimeout time.Duration
}

// Summary counts the tests run.
type Summary struct {
	Files, Passed, Failed int
}

// Run runs each test file and prints each failure (each test with
// Verbose) and a summary line on w. An error means a file could not be
// run (unreadable, invalid, its config rejected); the other files still
// run.
func Run(ctx context.Context, files []string, opts Options, w io.Writer) (Summary, error) {
	var sum Summary
	var errs []error
	for _, path := range files {
		passed, failed, err := runFile(ctx, path, opts, w)
		sum.Passed += passed
		sum.Failed += failed
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sum.Files++
	}
	verdict := "PASS"
	if sum.Failed > 0 || len(errs) > 0 {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s: %d passed, %d failed, %d of %d files run\n", verdict, sum.Passed, sum.Failed, sum.Files, len(files))
	return sum, errors.Join(errs...)
}

// runFile loads, builds and runs one test file.
func runFile(ctx context.Context, path string, opts Options, w io.Writer) (passed, failed int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	var f File
	src, err := yamlfile.Decode(path, data, &f, func(string) string { return "" })
	if err != nil {
		return 0, 0, err
	}
	if err := f.validate(); err != nil {
		return 0, 0, src.Annotate(err)
	}
	dir := filepath.Dir(path)
	cfgPath := opts.Config
	if cfgPath == "" {
		if f.Config == "" {
			return 0, 0, src.Annotate(yamlfile.Errorf("config", "required (or run with --config)"))
		}
		cfgPath = relTo(dir, f.Config)
	}
	env := func(name string) string {
		if v, ok := f.Env[name]; ok {
			return v
		}
		if opts.Getenv != nil {
			return opts.Getenv(name)
		}
		return ""
	}
	var pm generation.PathMap
	for _, from := range slices.Sorted(maps.Keys(f.Paths)) {
		if err := pm.Set(from + "=" + relTo(dir, f.Paths[from])); err != nil {
			return 0, 0, src.Annotate(yamlfile.Errorf("paths", "%v", err))
		}
	}
	h, err := build(ctx, cfgPath, env, func(c *generation.Config) {
		pm.Apply(c)
		if opts.Remap != nil {
			opts.Remap(c)
		}
	}, opts.ReadyTimeout, opts.Candidate)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: config %s: %w", path, cfgPath, err)
	}
	defer h.close()
	m, err := newMinter(&f, dir, h)
	if err != nil {
		return 0, 0, src.Annotate(err)
	}
	fmt.Fprintf(w, "%s (config %s)\n", path, cfgPath)
	for i := range f.Tests {
		c := &f.Tests[i]
		p := yamlfile.Index("tests", i)
		req, err := m.request(&c.Request)
		if err != nil {
			return passed, failed, src.Annotate(yamlfile.Wrap(p+".request", err))
		}
		d, limits := h.decide(ctx, req)
		problems := check(&c.Expect, &d, limits)
		if len(problems) == 0 {
			passed++
			if opts.Verbose {
				fmt.Fprintf(w, "  ok    %s\n", c.Name)
			}
			continue
		}
		failed++
		fmt.Fprintf(w, "  FAIL  %s (%s:%d)\n", c.Name, path, src.Line(p))
		for _, pr := range problems {
			fmt.Fprintf(w, "        %s\n", pr)
		}
		fmt.Fprintf(w, "        decision: %s\n", describe(&d, limits))
	}
	return passed, failed, nil
}

// harness is a config built for tests: the same compile serve runs, but
// sessions are served from memory and rate limits are built, never
// counted.
type harness struct {
	gen      *generation.Generation
	pipeline *authz.Pipeline
	auths    map[string]*generation.Auth
	sessions *memStore
	limits   *recorder
}

func build(ctx context.Context, path string, getenv func(string) string, remap func(*generation.Config), wait time.Duration, candidate bool) (*harness, error) {
	cfg, err := generation.Load(path, getenv)
	if err != nil {
		return nil, err
	}
	remap(cfg)
	policy := cfg.Policy
	policy.Rules = slices.Clone(cfg.Policy.Rules) // Compile drops them once compiled
	candFile := cfg.PolicyCandidate.File
	g, err := generation.Compile(&generation.Env{Pool: pool.New(pool.Options{})}, cfg)
	if err != nil {
		return nil, cfg.Annotate(err)
	}
	if candidate {
		// Compile has checked the candidate file as serve would.
		if g.Candidate == nil {
			_ = g.Release()
			return nil, errors.New("the config has no policy_candidate")
		}
		var cf struct {
			Policy authz.Config `yaml:"policy"`
		}
		if _, err := yamlfile.Load(candFile, &cf, func(string) string { return "" }); err != nil {
			_ = g.Release()
			return nil, err
		}
		policy = cf.Policy
	}
	h := &harness{gen: g, auths: map[string]*generation.Auth{}, sessions: &memStore{}, limits: &recorder{}}
	if err := h.start(ctx, wait); err != nil {
		_ = g.Release()
		return nil, err
	}
	list := make([]*authz.Authenticator, 0, len(g.Auths))
	for i := range g.Auths {
		a := &g.Auths[i]
		h.auths[a.Config.Name] = a
		au := *a.Authenticator
		if sc := a.Config.UDBSession; sc != nil {
			v, err := tokens.NewSessionVerifier(*sc, h.sessions, tokens.Options{})
			if err != nil {
				_ = g.Release()
				return nil, fmt.Errorf("authenticator %s: %w", a.Config.Name, err)
			}
			au.Verifier = v
		}
		list = append(list, &au)
	}
	opts := authz.Options{
		Limiter:           h.limits,
		XFFNumTrustedHops: cfg.RateLimit.XFFNumTrustedHops,
		NewID:             func() string { return "policy-test" },
	}
	if h.pipeline, err = authz.NewPipeline(policy, list, opts); err != nil {
		_ = g.Release()
		return nil, err
	}
	return h, nil
}

// start makes every authenticator able to verify. Keys read from files
// are loaded by Compile, and then nothing runs in the background (no
// Redis client dials). An authenticator that fetches its keys (jwks_url,
// discovery) needs the generation's background work: it is started, and
// waited for.
func (h *harness) start(ctx context.Context, wait time.Duration) error {
	if h.gen.Ready() == nil {
		return nil
	}
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if err := h.gen.Start(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for {
		err := h.gen.Ready()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (h *harness) close() { _ = h.gen.Release() }

// decide decides r and returns the decision and the rate-limit request it
// built.
func (h *harness) decide(ctx context.Context, r authz.Request) (authz.Decision, ratelimit.Request) {
	h.limits.last = ratelimit.Request{}
	d := h.pipeline.Decide(ctx, &r)
	return d, h.limits.last
}

// recorder is the harness's limiter: it keeps the request and allows it.
type recorder struct{ last ratelimit.Request }

func (r *recorder) Check(_ context.Context, req ratelimit.Request) (ratelimit.Result, error) {
	r.last = req
	return ratelimit.Result{Code: ratelimit.OK}, nil
}

// memStore is the session store of the test files' sessions, in memory.
type memStore struct {
	mu      sync.Mutex
	records map[string]map[string]string
}

var _ tokens.SessionStore = (*memStore)(nil)

func (s *memStore) SessionFields(_ context.Context, key string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.records[key]), nil
}

func (s *memStore) put(key string, fields map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.records == nil {
		s.records = map[string]map[string]string{}
	}
	s.records[key] = fields
}

// check compares a decision with what was expected.
func check(e *Expect, d *authz.Decision, limits ratelimit.Request) []string {
	var out []string
	if e.Status != 0 {
		if got := transport.HTTPStatus(d.Code); got != e.Status {
			out = append(out, fmt.Sprintf("status: got %d, want %d", got, e.Status))
		}
	}
	if e.Code != "" && d.Code.String() != e.Code {
		out = append(out, fmt.Sprintf("code: got %s, want %s", d.Code, e.Code))
	}
	if e.Reason != nil && d.Reason != *e.Reason {
		out = append(out, fmt.Sprintf("reason: got %q, want %q", d.Reason, *e.Reason))
	}
	if e.Rule != nil && d.Rule != *e.Rule {
		out = append(out, fmt.Sprintf("rule: got %q, want %q", d.Rule, *e.Rule))
	}
	if e.Subject != nil && d.Subject() != *e.Subject {
		out = append(out, fmt.Sprintf("subject: got %q, want %q", d.Subject(), *e.Subject))
	}
	if e.Authenticator != nil {
		got := ""
		if d.Identity != nil {
			got = d.Identity.Authenticator
		}
		if got != *e.Authenticator {
			out = append(out, fmt.Sprintf("authenticator: got %q, want %q", got, *e.Authenticator))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.UpstreamHeaders)) {
		want := e.UpstreamHeaders[name]
		i := slices.IndexFunc(d.UpstreamHeaders, func(h authz.Header) bool { return h.Name == strings.ToLower(name) })
		switch {
		case i < 0:
			out = append(out, fmt.Sprintf("upstream header %s: not set, want %q", name, want))
		case d.UpstreamHeaders[i].Value != want:
			out = append(out, fmt.Sprintf("upstream header %s: got %q, want %q", name, d.UpstreamHeaders[i].Value, want))
		}
	}
	for _, name := range e.RemovedHeaders {
		if !slices.Contains(d.RemoveHeaders, strings.ToLower(name)) {
			out = append(out, fmt.Sprintf("removed header %s: not removed", name))
		}
	}
	if l := e.RateLimits; l != nil {
		want := make([]string, len(l.Descriptors))
		for i, s := range l.Descriptors {
			want[i], _ = parseDescriptor(s) // validated
		}
		got := descriptors(limits)
		if limits.Domain != l.Domain && (len(got) > 0 || len(want) > 0) {
			out = append(out, fmt.Sprintf("rate_limits.domain: got %q, want %q", limits.Domain, l.Domain))
		}
		if !slices.Equal(got, want) {
			out = append(out, fmt.Sprintf("rate_limits.descriptors: got %q, want %q", got, want))
		}
	}
	return out
}

func descriptors(req ratelimit.Request) []string {
	out := make([]string, 0, len(req.Descriptors))
	for _, d := range req.Descriptors {
		parts := make([]string, len(d.Entries))
		for i, e := range d.Entries {
			parts[i] = e.Key + "=" + e.Value
		}
		out = append(out, strings.Join(parts, ", "))
	}
	return out
}

// describe is a decision in one line, for a failure: no header values
// (they may be claims), no credentials.
func describe(d *authz.Decision, limits ratelimit.Request) string {
	s := fmt.Sprintf("%d %s", transport.HTTPStatus(d.Code), d.Code)
	if d.Reason != "" {
		s += " reason=" + d.Reason
	}
	s += " rule=" + strconv.Quote(d.Rule)
	if d.Identity != nil {
		s += " subject=" + strconv.Quote(d.Identity.Subject) + " authenticator=" + d.Identity.Authenticator
	}
	if ds := descriptors(limits); len(ds) > 0 {
		s += " rate_limits=" + limits.Domain + ":" + strconv.Quote(strings.Join(ds, "; "))
	}
	return s
}

// minter turns credential shortcuts into credentials.
type minter struct {
	h       *harness
	jwt     map[string]*jwtKey // by issuer
	tickets map[string]*tokens.TicketSigner
}

type jwtKey struct {
	signer   *tokens.JWTSigner
	audience string
}

func newMinter(f *File, dir string, h *harness) (*minter, error) {
	m := &minter{h: h, jwt: map[string]*jwtKey{}, tickets: map[string]*tokens.TicketSigner{}}
	var errs []error
	for i, k := range f.SigningKeys.JWT {
		s, err := tokens.NewJWTSigner(relTo(dir, k.File), k.KID, k.Algorithm)
		if err != nil {
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("signing_keys.jwt", i), "%v", err))
			continue
		}
		m.jwt[k.Issuer] = &jwtKey{signer: s, audience: k.Audience}
	}
	for i, k := range f.SigningKeys.UDBTicket {
		alg := k.Algorithm
		if alg == "" {
			alg = tokens.TicketHS256
		}
		s, err := tokens.NewTicketSigner(k.KID, alg, relTo(dir, k.File))
		if err != nil {
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("signing_keys.udb_ticket", i), "%v", err))
			continue
		}
		m.tickets[k.KID] = s
	}
	return m, errors.Join(errs...)
}

// request builds the authz.Request the gateway would send for r, as the
// gRPC transport decodes it.
func (m *minter) request(r *Request) (authz.Request, error) {
	u, _ := url.Parse(r.URL) // validated
	method := r.Method
	if method == "" {
		method = "GET"
	}
	headers := make([][2]string, 0, len(r.Headers)+1)
	for _, name := range slices.Sorted(maps.Keys(r.Headers)) {
		headers = append(headers, [2]string{name, r.Headers[name]})
	}
	if r.Credential != nil {
		var err error
		if headers, err = m.credential(r.Credential, headers); err != nil {
			return authz.Request{}, yamlfile.Wrap("credential", err)
		}
	}
	cr := extauthz.BuildCheckRequest(extauthz.HTTPRequest{
		Method: method, Scheme: u.Scheme, Host: u.Host, Path: u.RequestURI(), Headers: headers,
		PeerAddress: r.ClientAddress, RequestID: "policy-test", ContextExtensions: r.ContextExtensions,
	})
	return extauthz.RequestFromProto(cr), nil
}

// credential mints, stores or takes the credential and adds it to headers
// where its authenticator reads it.
func (m *minter) credential(c *Credential, headers [][2]string) ([][2]string, error) {
	kind := ""
	switch {
	case c.JWT != nil:
		kind = "jwt"
	case c.UDBTicket != nil:
		kind = "udb_ticket"
	case c.Session != nil:
		kind = "udb_session"
	}
	a, err := m.authenticator(c.Authenticator, kind)
	if err != nil {
		return nil, err
	}
	var cred string
	switch {
	case c.JWT != nil:
		cred, err = m.mintJWT(c.JWT)
	case c.UDBTicket != nil:
		cred, err = m.mintTicket(c.UDBTicket)
	case c.Session != nil:
		cred = m.storeSession(a, c.Session)
	case c.APIKey != "":
		cred = c.APIKey
	default:
		cred = c.Value
	}
	if err != nil {
		return nil, err
	}
	src := a.Config.Source
	switch {
	case src.Header != "":
		return append(headers, [2]string{strings.ToLower(src.Header), cred}), nil
	case src.Authorization != "":
		return append(headers, [2]string{"authorization", src.Authorization + " " + cred}), nil
	}
	cookie := src.Cookie + "=" + cred
	for i := range headers {
		if strings.EqualFold(headers[i][0], "cookie") {
			headers[i][1] += "; " + cookie
			return headers, nil
		}
	}
	return append(headers, [2]string{"cookie", cookie}), nil
}

// authenticator is the named authenticator, or the only one of kind.
func (m *minter) authenticator(name, kind string) (*generation.Auth, error) {
	if name != "" {
		a := m.h.auths[name]
		if a == nil {
			return nil, yamlfile.Errorf("authenticator", "%q is not an authenticator of the config", name)
		}
		return a, nil
	}
	var found []*generation.Auth
	for _, a := range m.h.auths {
		if k := kindOf(a.Config); k == kind {
			found = append(found, a)
		}
	}
	if len(found) != 1 {
		return nil, yamlfile.Errorf("authenticator", "required: the config has %d %s authenticators", len(found), kind)
	}
	return found[0], nil
}

func kindOf(c *generation.AuthenticatorConfig) string {
	switch {
	case c.JWT != nil:
		return "jwt"
	case c.UDBTicket != nil:
		return "udb_ticket"
	case c.UDBSession != nil:
		return "udb_session"
	}
	return ""
}

// validity is a minted credential's issue time and expiry for a lifetime
// from now (default 1h); a negative lifetime makes it expired, issued an
// hour before its expiry.
func validity(d time.Duration) (issued, expiry time.Time) {
	now := time.Now().Truncate(time.Second)
	if d == 0 {
		d = time.Hour
	}
	expiry = now.Add(d)
	if d < 0 {
		return expiry.Add(-time.Hour), expiry
	}
	return now, expiry
}

func (m *minter) mintJWT(s *JWTSpec) (string, error) {
	iss := s.Issuer
	if iss == "" {
		if len(m.jwt) != 1 {
			return "", yamlfile.Errorf("jwt.issuer", "required: signing_keys.jwt has %d issuers", len(m.jwt))
		}
		for k := range m.jwt {
			iss = k
		}
	}
	k := m.jwt[iss]
	if k == nil {
		return "", yamlfile.Errorf("jwt.issuer", "%q has no key in signing_keys.jwt", iss)
	}
	signer := k.signer
	iat, exp := validity(s.ExpiresIn)
	claims := map[string]any{}
	for name, v := range s.Claims {
		claims[name] = v
	}
	for name, v := range map[string]any{"iss": iss, "iat": iat.Unix(), "nbf": iat.Unix(), "exp": exp.Unix()} {
		if _, dup := claims[name]; dup {
			return "", yamlfile.Errorf("jwt.claims."+name, "set by the harness")
		}
		claims[name] = v
	}
	if s.Subject != "" {
		claims["sub"] = s.Subject
	}
	if aud := cmpOr(s.Audience, k.audience); aud != "" {
		claims["aud"] = aud
	}
	if s.Scope != "" {
		claims["scope"] = s.Scope
	}
	tok, err := signer.Sign(claims)
	if err != nil {
		return "", yamlfile.Errorf("jwt", "%v", err)
	}
	return tok, nil
}

func (m *minter) mintTicket(s *TicketSpec) (string, error) {
	kid := s.KID
	if kid == "" {
		if len(m.tickets) != 1 {
			return "", yamlfile.Errorf("udb_ticket.kid", "required: signing_keys.udb_ticket has %d keys", len(m.tickets))
		}
		for k := range m.tickets {
			kid = k
		}
	}
	signer := m.tickets[kid]
	if signer == nil {
		return "", yamlfile.Errorf("udb_ticket.kid", "%q is not in signing_keys.udb_ticket", kid)
	}
	iat, exp := validity(s.ExpiresIn)
	tok, err := signer.Sign(tokens.TicketClaims{UserID: s.User, AppID: s.App, Scopes: s.Scopes, Extra: s.Claims,
		IssuedAt: iat, Expiry: exp})
	if err != nil {
		return "", yamlfile.Errorf("udb_ticket", "%v", err)
	}
	return tok, nil
}

// storeSession makes up a session token and stores the record under the
// key the authenticator looks it up by.
func (m *minter) storeSession(a *generation.Auth, s *Session) string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	token := "policytest" + hex.EncodeToString(b[:])
	fields := map[string]string{}
	for k, v := range s.Claims {
		fields[k] = v
	}
	fields[tokens.SessionFieldUserID] = s.UserID
	if s.App != "" {
		fields[tokens.SessionFieldAppID] = s.App
	}
	if s.Scope != "" {
		fields[tokens.SessionFieldScope] = s.Scope
	}
	if s.Revoked {
		fields[tokens.SessionFieldRevoked] = "1"
	}
	if s.ExpiresIn != 0 {
		fields[tokens.SessionFieldExpiry] = strconv.FormatInt(time.Now().Add(s.ExpiresIn).Unix(), 10)
	}
	sc := *a.Config.UDBSession
	sc.ApplyDefaults()
	m.h.sessions.put(sc.SessionKey(token), fields)
	return token
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// relTo is p read relative to dir (an absolute p as is).
func relTo(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}
