package authz

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/tokens"
)

// Options are the optional parts of a Pipeline; the zero value works.
type Options struct {
	// NewID returns a decision id; default: a process-unique id.
	NewID func() string
	// Limiter applies the rules' rate_limits; rules with rate_limits need
	// one.
	Limiter Limiter
	// RateLimitHeaders chooses the rate-limit headers of 429 responses
	// (Retry-After is always sent).
	RateLimitHeaders ratelimit.HeaderOptions
	// RateLimitHeadersOnAllow adds them to allowed responses too.
	RateLimitHeadersOnAllow bool
	// XFFNumTrustedHops is how many proxies in front of the gateway append
	// to x-forwarded-for (see ClientAddress).
	XFFNumTrustedHops int
	// Tracer, when set, adds child spans for credential verification and
	// rate limiting under a recording Check span.
	Tracer trace.Tracer
}

// Pipeline decides requests under one immutable policy. Build a new one to
// change the policy (see Live).
type Pipeline struct {
	realm          string
	rules          []rule
	identity       identityHeaders
	allowEncoded   bool
	newID          func() string
	authenticators map[string]*Authenticator
	limiter        Limiter
	rlHeaders      ratelimit.HeaderOptions
	rlOnAllow      bool
	xffHops        int
	tracer         trace.Tracer
}

type rule struct {
	name    string
	match   *matcher
	action  string
	authn   []*Authenticator
	require Requirements
	limits  *rateLimits
}

type identityHeaders struct {
	subject, issuer, method, appID, scopes string
	claims                                 []claimHeader
	all                                    []string // every identity header name, for removal
}

type claimHeader struct{ claim, header string }

// NewPipeline validates cfg (after applying defaults) and compiles it. The
// authenticators are the ones rules may name.
func NewPipeline(cfg Config, authenticators []*Authenticator, opts Options) (*Pipeline, error) {
	cfg.ApplyDefaults()
	byName := make(map[string]*Authenticator, len(authenticators))
	for _, a := range authenticators {
		byName[a.Name] = a
	}
	if err := cfg.Validate(func(n string) bool { return byName[n] != nil }); err != nil {
		return nil, err
	}
	p := &Pipeline{
		realm:          cfg.Realm,
		identity:       compileIdentity(cfg.IdentityHeaders),
		allowEncoded:   cfg.AllowEncodedSlashes,
		newID:          opts.NewID,
		authenticators: byName,
		limiter:        opts.Limiter,
		rlHeaders:      opts.RateLimitHeaders,
		rlOnAllow:      opts.RateLimitHeadersOnAllow,
		xffHops:        opts.XFFNumTrustedHops,
		tracer:         opts.Tracer,
	}
	if p.newID == nil {
		p.newID = newIDGenerator()
	}
	for i := range cfg.Rules {
		rc := &cfg.Rules[i]
		m, err := compileMatch(&rc.Match)
		if err != nil {
			return nil, err // unreachable: Validate compiled it already
		}
		r := rule{name: rc.Name, match: m, action: rc.Action, require: rc.Require, limits: compileRateLimits(&rc.RateLimits)}
		if r.limits != nil && opts.Limiter == nil {
			return nil, yamlfile.Errorf(yamlfile.Index("rules", i)+".rate_limits", "no rate limiter is configured (rate_limit.files)")
		}
		for _, n := range rc.Authenticators {
			r.authn = append(r.authn, byName[n])
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

func compileIdentity(h IdentityHeaders) identityHeaders {
	name := func(s string) string {
		if s == "-" {
			return ""
		}
		return strings.ToLower(s)
	}
	out := identityHeaders{
		subject: name(h.Subject), issuer: name(h.Issuer), method: name(h.Method),
		appID: name(h.AppID), scopes: name(h.Scopes),
	}
	claims := make([]string, 0, len(h.Claims))
	for c := range h.Claims {
		claims = append(claims, c)
	}
	slices.Sort(claims)
	for _, c := range claims {
		if n := name(h.Claims[c]); n != "" {
			out.claims = append(out.claims, claimHeader{claim: c, header: n})
		}
	}
	for _, n := range []string{out.subject, out.issuer, out.method, out.appID, out.scopes} {
		if n != "" {
			out.all = append(out.all, n)
		}
	}
	for _, c := range out.claims {
		out.all = append(out.all, c.header)
	}
	for _, n := range h.AlsoRemove {
		out.all = append(out.all, strings.ToLower(n))
	}
	slices.Sort(out.all)
	out.all = slices.Compact(out.all)
	return out
}

// Authenticator returns the authenticator with the given name, or nil.
func (p *Pipeline) Authenticator(name string) *Authenticator { return p.authenticators[name] }

// Decide decides one request. It never panics on malformed input and never
// returns an allow for a request it could not fully evaluate.
func (p *Pipeline) Decide(ctx context.Context, r *Request) Decision {
	d := Decision{ID: p.newID()}
	if reason := p.normalise(r); reason != "" {
		return p.deny(d, BadRequest, reason)
	}
	ru := p.match(r)
	if ru == nil {
		return p.deny(d, Forbidden, "no_matching_rule")
	}
	d.Rule = ru.name
	switch ru.action {
	case ActionDeny:
		return p.deny(d, Forbidden, "denied_by_rule")
	case ActionAllow:
		d.RemoveHeaders = p.identity.all
		p.applyRateLimits(ctx, r, ru, &d, nil)
		return d
	}
	id, a, err := p.authenticate(ctx, r, ru)
	if err != nil {
		return p.denyAuth(d, ru, err)
	}
	d.Identity = id
	if reason := ru.require.check(&id.Principal); reason != "" {
		return p.deny(d, Forbidden, reason)
	}
	if ctx.Err() != nil {
		return p.deny(d, Unavailable, "deadline_exceeded")
	}
	if p.applyRateLimits(ctx, r, ru, &d, id) {
		return d
	}
	p.identity.render(&d, id)
	if a.StripCredential {
		if set, remove := a.Source.strip(r); set != nil {
			d.UpstreamHeaders = append(d.UpstreamHeaders, *set)
		} else {
			d.RemoveHeaders = append(d.RemoveHeaders, remove)
		}
	}
	return d
}

func (p *Pipeline) match(r *Request) *rule {
	for i := range p.rules {
		if p.rules[i].match.matches(r) {
			return &p.rules[i]
		}
	}
	return nil
}

// normalise canonicalises the request's method, host and path in place and
// returns a reason when the request cannot be evaluated safely.
func (p *Pipeline) normalise(r *Request) string {
	if r.Method == "" || r.Path == "" {
		return "missing_request_attributes"
	}
	r.Method = strings.ToUpper(r.Method)
	if !validHost(r.Host) {
		return "invalid_host"
	}
	r.Host = hostWithoutPort(r.Host)
	path, ok := canonicalPath(r.Path, p.allowEncoded)
	if !ok {
		return "invalid_path"
	}
	r.Path = path
	return ""
}

// authenticate tries the rule's authenticators in order. The first that
// accepts its credential wins. When none does, an authenticator that could
// not decide makes the request Unavailable (it might have accepted);
// otherwise the most specific rejection is returned.
func (p *Pipeline) authenticate(ctx context.Context, r *Request, ru *rule) (*Identity, *Authenticator, error) {
	var rejected, unavailable error
	for _, a := range ru.authn {
		cred, ok := a.Source.Extract(r)
		if !ok {
			continue
		}
		if cred == "" {
			rejected = firstSpecific(rejected, tokens.ErrMalformed)
			continue
		}
		vctx, span := p.startSpan(ctx, "ext_authz.verify", attribute.String("ext_authz.authenticator", a.Name))
		pr, err := a.Verifier.Verify(vctx, cred)
		endSpan(span, verifyOutcome(err), err != nil && !errors.Is(err, tokens.ErrInvalid))
		switch {
		case err == nil:
			return &Identity{Principal: pr, Authenticator: a.Name}, a, nil
		case errors.Is(err, tokens.ErrInvalid):
			rejected = firstSpecific(rejected, err)
		default:
			if unavailable == nil {
				unavailable = fmt.Errorf("authenticator %s: %w", a.Name, err)
			}
		}
	}
	switch {
	case unavailable != nil:
		return nil, nil, unavailable
	case rejected != nil:
		return nil, nil, rejected
	}
	return nil, nil, tokens.ErrMissing
}

func verifyOutcome(err error) string {
	switch {
	case err == nil:
		return "accepted"
	case errors.Is(err, tokens.ErrInvalid):
		return tokens.Reason(err)
	}
	return "unavailable"
}

// firstSpecific keeps the first rejection, but lets a specific reason
// replace "malformed" (a credential meant for another authenticator is
// malformed to this one).
func firstSpecific(have, next error) error {
	if have == nil || (errors.Is(have, tokens.ErrMalformed) && !errors.Is(next, tokens.ErrMalformed)) {
		return next
	}
	return have
}

func (p *Pipeline) denyAuth(d Decision, ru *rule, err error) Decision {
	reason := tokens.Reason(err)
	if reason == "" {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return p.deny(d, Unavailable, "deadline_exceeded")
		}
		return p.deny(d, Unavailable, "authenticator_unavailable")
	}
	d = p.deny(d, Unauthenticated, reason)
	seen := map[string]bool{}
	for _, a := range ru.authn {
		s := a.scheme()
		if seen[strings.ToLower(s)] {
			continue
		}
		seen[strings.ToLower(s)] = true
		d.Challenges = append(d.Challenges, challenge(s, p.realm, reason))
	}
	return d
}

// challenge renders one WWW-Authenticate challenge (RFC 9110 11.6.1; for
// Bearer, RFC 6750 3: no error attribute when the credential was missing).
func challenge(scheme, realm, reason string) string {
	c := scheme + ` realm="` + realm + `"`
	if reason != tokens.ErrMissing.Reason {
		c += `, error="invalid_token", error_description="` + reason + `"`
	}
	return c
}

func (p *Pipeline) deny(d Decision, code Code, reason string) Decision {
	d.Code = code
	d.Reason = reason
	d.UpstreamHeaders = nil
	d.RemoveHeaders = nil
	return d
}

// check returns "" when the principal meets the requirements, else the
// reason it does not.
func (q *Requirements) check(p *tokens.Principal) string {
	for _, s := range q.Scopes {
		if !slices.Contains(p.Scopes, s) {
			return "insufficient_scope"
		}
	}
	for claim, accepted := range q.Claims {
		if !claimAccepted(p.Claims[claim], accepted) {
			return "claim_mismatch"
		}
	}
	return ""
}

func claimAccepted(v any, accepted []string) bool {
	if list, ok := v.([]any); ok {
		for _, e := range list {
			if claimAccepted(e, accepted) {
				return true
			}
		}
		return false
	}
	s, ok := claimString(v)
	return ok && slices.Contains(accepted, s)
}

// claimString renders a scalar claim as text; lists join with commas.
func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := claimString(e)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), true
	case []string:
		return strings.Join(x, ","), true
	}
	return "", false
}

// render sets the identity headers for an allowed, authenticated request
// and removes every identity header it does not set, so a client can never
// forge one. (Envoy applies headers before removals, so a header must not be
// both set and removed.)
func (h *identityHeaders) render(d *Decision, id *Identity) {
	set := make([]Header, 0, 6+len(h.claims)) // +1: the cookie header, when a cookie is stripped
	add := func(name, value string) {
		if name != "" && value != "" && validHeaderValue(value) {
			set = append(set, Header{Name: name, Value: value})
		}
	}
	add(h.subject, id.Subject)
	add(h.issuer, id.Issuer)
	add(h.method, id.Method)
	add(h.appID, id.AppID)
	add(h.scopes, strings.Join(id.Scopes, " "))
	for _, c := range h.claims {
		if v, ok := claimString(id.Claims[c.claim]); ok {
			add(c.header, v)
		}
	}
	remove := make([]string, 0, len(h.all)+1) // +1: the credential header, when stripped
	for _, n := range h.all {
		if !slices.ContainsFunc(set, func(s Header) bool { return s.Name == n }) {
			remove = append(remove, n)
		}
	}
	d.UpstreamHeaders = set
	d.RemoveHeaders = remove
}

// validHeaderValue rejects values Envoy would refuse (control characters)
// and overlong ones.
func validHeaderValue(v string) bool {
	if len(v) > 4096 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost reports whether an :authority can be matched safely: no
// control characters or spaces, and valid UTF-8. Lower-casing invalid UTF-8
// would turn its bytes into U+FFFD, so the host the rules see would not be
// the host the upstream sees.
func validHost(h string) bool {
	ascii := true
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c == 0x7f {
			return false
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	return ascii || utf8.ValidString(h)
}

// canonicalPath resolves dot segments and merges slashes so rules match the
// path an upstream will resolve. It rejects paths that do not start with /,
// that hold control characters or invalid UTF-8 (an overlong "\xc0\xaf" is
// a "/" to a lenient decoder upstream), and (unless allowEncoded) encoded
// slashes or backslashes.
func canonicalPath(p string, allowEncoded bool) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	clean, ascii := true, true
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x20 || c == 0x7f {
			return "", false
		}
		if c >= 0x80 {
			ascii = false
		}
		if c == '%' {
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", false
			}
			switch strings.ToLower(p[i+1 : i+3]) {
			case "2f", "5c":
				if !allowEncoded {
					return "", false
				}
			case "2e":
				clean = false
			}
		}
		if c == '/' && i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
			clean = false
		}
	}
	if !ascii && !utf8.ValidString(p) {
		return "", false
	}
	if clean {
		return p, true
	}
	// Decode %2E (an unreserved character: RFC 3986 6.2.2.2) so "%2e%2e"
	// is resolved like "..".
	p = strings.NewReplacer("%2e", ".", "%2E", ".").Replace(p)
	trailing := strings.HasSuffix(p, "/")
	var out []string
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	res := "/" + strings.Join(out, "/")
	if trailing && res != "/" {
		res += "/"
	}
	return res, true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// newIDGenerator returns ids made of a random per-process prefix and a
// counter: unique, sortable within a process, and cheaper than a random
// UUID per request.
func newIDGenerator() func() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := hex.EncodeToString(b[:]) + "-"
	var n atomic.Uint64
	return func() string {
		return prefix + strconv.FormatUint(n.Add(1), 36)
	}
}

// Live holds the current Pipeline and swaps it atomically on reload.
type Live struct {
	p atomic.Pointer[Pipeline]
}

// NewLive returns a Live serving p.
func NewLive(p *Pipeline) *Live {
	l := &Live{}
	l.p.Store(p)
	return l
}

// Store replaces the pipeline; calls in flight finish on the old one.
func (l *Live) Store(p *Pipeline) { l.p.Store(p) }

// Load returns the current pipeline.
func (l *Live) Load() *Pipeline { return l.p.Load() }

// Decide decides r with the current pipeline.
func (l *Live) Decide(ctx context.Context, r *Request) Decision {
	return l.p.Load().Decide(ctx, r)
}
