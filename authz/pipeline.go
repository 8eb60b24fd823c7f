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
	// Assertion, when set, attaches a signed identity assertion to every
	// allowed, authenticated request (assertion.go).
	Assertion *AssertionOptions
	// RateLimitPlans, when set, resolves callers' plans (Identity.Plan)
	// and the limits of descriptors that name a plan descriptor.
	RateLimitPlans *ratelimit.Plans
	// Explain keeps every rule's matcher so that Explain can say why each
	// rule did or did not match; off, Explain names only the rule that
	// matched. Off by default: a large policy would keep them for nothing.
	Explain bool
}

// Pipeline decides requests under one immutable policy. Build a new one to
// change the policy (see Live).
type Pipeline struct {
	realm          string
	rules          []ruleEntry // in config order, as the index numbers them
	extras         []rule      // authenticators, requirements, rate limits of the rules that have them
	index          *ruleIndex
	linear         []*matcher // tests: when set, first scans these instead of the index
	identity       identityHeaders
	allowEncoded   bool
	caseSensitive  bool
	methodOverride string
	newID          func() string
	authenticators map[string]*Authenticator
	limiter        Limiter
	rlHeaders      ratelimit.HeaderOptions
	rlOnAllow      bool
	xffHops        int
	tracer         trace.Tracer
	assertion      *assertionPlan // nil: no assertion
	strip          stripPlan
	plans          *ratelimit.Plans
	checked        bool       // some rule has a requestMatch (requestmatch.go)
	shadows        []int32    // positions of the shadow rules (shadow.go)
	matchers       []*matcher // Options.Explain: every rule's, for Explain
}

// rule is what Decide uses of the rule that matched (Pipeline.rule).
type rule struct {
	name    string
	action  string
	authn   []*Authenticator
	require Requirements
	limits  *rateLimits
	match   *requestMatch // client_cidrs, context_extensions, match.when
	when    []*condition  // requirements (condition.go)
	shadow  *matcher      // the whole match of a shadow rule
	// audience is the rule's assertion_audience ("" for the default).
	audience string
}

// ruleEntry is a rule as the pipeline keeps it: without pointers, so that
// a policy of many rules costs the garbage collector one object to mark
// (see ruleIndex). Most rules (allow and deny without rate limits) have
// nothing else; the others' parts are in Pipeline.extras.
type ruleEntry struct {
	name   span // in index.text
	extra  int32
	action uint8
}

// actions numbers the actions for ruleEntry.
var actions = [...]string{ActionAllow, ActionDeny, ActionAuthenticate}

// rule returns rule i's parts.
func (p *Pipeline) rule(i int) rule {
	e := p.rules[i]
	var r rule
	if e.extra >= 0 {
		r = p.extras[e.extra]
	}
	r.name, r.action = p.index.str(e.name), actions[e.action]
	return r
}

// NewPipeline validates cfg (after applying defaults) and compiles it. The
// authenticators are the ones rules may name. It is Compile followed by
// Policy.NewPipeline; a service that validates before it builds the
// authenticators calls those two, so the policy is compiled once.
func NewPipeline(cfg Config, authenticators []*Authenticator, opts Options) (*Pipeline, error) {
	pol, err := Compile(cfg, func(n string) bool {
		return slices.ContainsFunc(authenticators, func(a *Authenticator) bool { return a.Name == n })
	})
	if err != nil {
		return nil, err
	}
	return pol.NewPipeline(authenticators, opts)
}

// NewPipeline builds a pipeline of the compiled policy over the
// authenticators, which must include every one its rules name (those
// Compile was told exist).
func (pol *Policy) NewPipeline(authenticators []*Authenticator, opts Options) (*Pipeline, error) {
	cfg, compiled := &pol.cfg, pol.rules
	byName := make(map[string]*Authenticator, len(authenticators))
	for _, a := range authenticators {
		byName[a.Name] = a
	}
	for i := range cfg.Rules {
		for j, n := range cfg.Rules[i].Authenticators {
			if byName[n] == nil {
				return nil, yamlfile.Errorf(yamlfile.Index("rules", i)+"."+yamlfile.Index("authenticators", j), "no authenticator named %q", n)
			}
		}
	}
	p := &Pipeline{
		realm:          cfg.Realm,
		identity:       compileIdentity(cfg.IdentityHeaders),
		allowEncoded:   cfg.AllowEncodedSlashes,
		caseSensitive:  cfg.CaseSensitivePaths,
		methodOverride: cfg.MethodOverride,
		newID:          opts.NewID,
		authenticators: byName,
		limiter:        opts.Limiter,
		rlHeaders:      opts.RateLimitHeaders,
		rlOnAllow:      opts.RateLimitHeadersOnAllow,
		xffHops:        opts.XFFNumTrustedHops,
		tracer:         opts.Tracer,
		plans:          opts.RateLimitPlans,
	}
	if p.newID == nil {
		p.newID = newIDGenerator()
	}
	var err error
	if p.assertion, err = compileAssertion(opts.Assertion, &p.identity); err != nil {
		return nil, yamlfile.Wrap("upstream_assertion", err)
	}
	p.strip = compileStrip(cfg.StripCredentials, byName)
	var text textBuilder
	text.grow(textSize(cfg.Rules))
	p.rules = make([]ruleEntry, len(cfg.Rules))
	ms := make([]*matcher, len(cfg.Rules))
	for i := range cfg.Rules {
		rc := &cfg.Rules[i]
		ms[i] = compiled[i].match
		// Names are validated distinct, and the action one of actions.
		e := ruleEntry{name: text.addNew(rc.Name), extra: -1, action: uint8(slices.Index(actions[:], rc.Action))}
		r := rule{require: rc.Require, limits: compiled[i].limits, match: ms[i].extra, when: compiled[i].when, audience: rc.AssertionAudience}
		if compiled[i].shadow {
			r.match, r.shadow = p.addShadow(i, ms[i])
		}
		p.checked = p.checked || r.match != nil
		if r.limits != nil && opts.Limiter == nil {
			return nil, yamlfile.Errorf(yamlfile.Index("rules", i)+".rate_limits", "no rate limiter is configured (rate_limit.files)")
		}
		if r.audience != "" && p.assertion == nil {
			return nil, yamlfile.Errorf(yamlfile.Index("rules", i)+".assertion_audience", "no upstream_assertion is configured")
		}
		if err := checkPlanNames(i, r.limits, p.plans); err != nil {
			return nil, err
		}
		for _, n := range rc.Authenticators {
			r.authn = append(r.authn, byName[n])
		}
		if r.limits != nil || len(r.authn) > 0 || len(r.require.Scopes) > 0 || len(r.require.Claims) > 0 || r.match != nil || len(r.when) > 0 || r.audience != "" {
			e.extra = int32(len(p.extras))
			p.extras = append(p.extras, r)
		}
		p.rules[i] = e
	}
	p.index = newRuleIndex(ms, &text)
	if opts.Explain {
		p.matchers = ms
	}
	return p, nil
}

// textSize is about the size of the text of rules' index (names, paths,
// hosts; shared ones counted each time), and the number of its strings
// other than names.
func textSize(rules []RuleConfig) (n, k int) {
	for i := range rules {
		r := &rules[i]
		n += len(r.Name) + len(r.Match.Path.Exact) + len(r.Match.Path.Prefix) + len(r.Match.Path.Regex)
		k++
		for _, h := range r.Match.Hosts {
			n += len(h)
		}
	}
	return n, k
}

// tracing reports whether startSpan would start a span under ctx.
func (p *Pipeline) tracing(ctx context.Context) bool {
	return p.tracer != nil && trace.SpanFromContext(ctx).IsRecording()
}

// Authenticator returns the authenticator with the given name, or nil.
func (p *Pipeline) Authenticator(name string) *Authenticator { return p.authenticators[name] }

// Decide decides one request. It never panics on malformed input and never
// returns an allow for a request it could not fully evaluate.
func (p *Pipeline) Decide(ctx context.Context, r *Request) (d Decision) {
	d = Decision{ID: p.newID()}
	if reason := p.normalise(r); reason != "" {
		return p.deny(d, BadRequest, reason)
	}
	scan := requestScan(r)
	methods, overrides, reason := p.overrides(r, &scan)
	if reason != "" {
		return p.deny(d, BadRequest, reason)
	}
	st := matchState{lazyActivation: lazyActivation{hops: p.xffHops}, errPos: -1}
	i, reason := p.match(r, methods, &st)
	if reason != "" {
		return p.deny(d, BadRequest, reason)
	}
	if st.errPos >= 0 && (i < 0 || st.errPos < i) {
		// A rule before the one that matched (or none) could not be
		// decided: it might have matched.
		d.Rule = p.index.str(p.rules[st.errPos].name)
		return p.deny(d, Forbidden, ReasonConditionError)
	}
	if len(p.shadows) > 0 {
		// After the enforced decision, never before it: a shadow rule's
		// authentication (an introspection call that spends the
		// request's deadline) must not change what is enforced.
		defer func() { d.Shadow = p.shadowDecisions(ctx, r, i, &st, &scan) }()
	}
	if i < 0 {
		return p.deny(d, Forbidden, "no_matching_rule")
	}
	rv := p.rule(i)
	ru := &rv
	d.Rule = ru.name
	switch ru.action {
	case ActionDeny:
		return p.deny(d, Forbidden, "denied_by_rule")
	case ActionAllow:
		if reason := st.requirements(r, ru, nil); reason != "" {
			return p.deny(d, Forbidden, reason)
		}
		d.RemoveHeaders = p.identity.all
		if extra := scan.spellings(p.identity.keys); len(extra) > 0 || len(overrides) > 0 {
			d.RemoveHeaders = slices.Concat(p.identity.all, extra, overrides)
		}
		p.finishAnonymous(r, &scan, &d)
		p.applyRateLimits(ctx, r, ru, &d, nil)
		return d
	}
	id, a, err := p.authenticate(ctx, r, ru, &scan)
	if err != nil {
		return p.denyAuth(d, ru, err)
	}
	d.Identity = id
	p.resolvePlan(id)
	if reason := ru.require.check(&id.Principal); reason != "" {
		return p.deny(d, Forbidden, reason)
	}
	if reason := st.requirements(r, ru, id); reason != "" {
		return p.deny(d, Forbidden, reason)
	}
	// A stripped credential is removed by name, or (a cookie among
	// others) by setting the cookie header without it.
	var stripSet *Header
	var stripName string
	if a.StripCredential {
		stripSet, stripName = a.Source.strip(r)
	}
	set, remove, ok := p.identity.render(id, &scan, stripName)
	if !ok {
		// Forwarding it would drop or alter the identity the upstream
		// relies on; refuse rather than send the request without it.
		return p.deny(d, Forbidden, "invalid_identity")
	}
	if ctx.Err() != nil {
		return p.deny(d, Unavailable, "deadline_exceeded")
	}
	if p.applyRateLimits(ctx, r, ru, &d, id) {
		return d
	}
	d.UpstreamHeaders, d.RemoveHeaders = set, remove
	if len(overrides) > 0 {
		// The override headers go before the credential header, as
		// they always have.
		if stripName != "" {
			d.RemoveHeaders = slices.Concat(remove[:len(remove)-1], overrides, []string{stripName})
		} else {
			d.RemoveHeaders = slices.Concat(remove, overrides)
		}
	}
	if stripSet != nil {
		d.UpstreamHeaders = append(d.UpstreamHeaders, *stripSet)
	}
	if a.StripCredential && a.Source.Header != "" {
		// Other spellings of the credential header reach a CGI-style
		// upstream as the same header.
		d.RemoveHeaders = append(d.RemoveHeaders, scan.spellingsOf(headerKey(a.Source.Header))...)
	}
	if reason := p.finishAuthenticated(r, ru, a, id, &scan, &d); reason != "" {
		return p.deny(d, Unavailable, reason)
	}
	return d
}

// overrides applies the method_override mode to the request's method and
// target override headers and "_method" query parameters: the override
// methods rules must agree on (match; the query ones in strip too, since
// a query parameter cannot be stripped), the header names to strip (strip;
// target overrides in match too), or a reason to refuse the request.
func (p *Pipeline) overrides(r *Request, scan *headerScan) (methods, strip []string, reason string) {
	names, values, targets := scan.names, scan.values, scan.targets
	query := queryMethodOverrides(r.Query)
	switch {
	case len(names) == 0 && len(targets) == 0 && len(query) == 0:
		return nil, nil, ""
	case p.methodOverride == MethodOverrideReject:
		return nil, nil, "method_override"
	case p.methodOverride == MethodOverrideMatch:
		methods, ok := overrideMethods(slices.Concat(values, query))
		if !ok {
			return nil, nil, "method_override"
		}
		return methods, targets, "" // methods forwarded: the upstream acts on them
	}
	methods, ok := overrideMethods(query)
	if !ok {
		return nil, nil, "method_override"
	}
	return methods, append(names, targets...), ""
}

// match returns the first rule that matches the request. Rules match the
// canonical path, and when it has ";" parameters also the path a servlet
// container serves (parameters stripped), under the request's method and
// each override method (MethodOverrideMatch); when these readings pick
// different rules the request is ambiguous and the reason says so. (Both
// readings are functions of the canonical path.)
func (p *Pipeline) match(r *Request, overrides []string, st *matchState) (int, string) {
	var accept func(int) bool
	if p.checked {
		accept = func(i int) bool { return p.accept(i, r, st) }
	}
	ru := p.first(r.Host, r.Path, r.Method, accept)
	for _, m := range overrides {
		if p.first(r.Host, r.Path, m, accept) != ru {
			return -1, "ambiguous_method"
		}
	}
	// Every other reading of the path a mainstream upstream may serve must
	// pick the same rule: a servlet container strips ;parameters, and a
	// case-insensitive router (Express by default, ASP.NET Core, IIS)
	// serves /ADMIN from its /admin handler.
	stripped := stripPathParams(r.Path)
	readings := [3]string{stripped}
	n := 1
	if !p.caseSensitive {
		if f := foldPathCase(r.Path); f != r.Path {
			readings[n], n = f, n+1
			if fs := stripPathParams(f); fs != f {
				readings[n], n = fs, n+1
			}
		}
	}
	for _, path := range readings[:n] {
		if path == r.Path {
			continue
		}
		if p.first(r.Host, path, r.Method, accept) != ru {
			return -1, ErrAmbiguousPath.Error()
		}
		for _, m := range overrides {
			if p.first(r.Host, path, m, accept) != ru {
				return -1, ErrAmbiguousPath.Error()
			}
		}
	}
	return ru, ""
}

// foldPathCase returns the path as a case-insensitive router compares it:
// every letter in lower case after upper-casing it, so the Unicode letters
// whose simple case mapping lands on ASCII (U+0131 dotless i and U+017F long
// s upper-case to I and S; U+212A KELVIN SIGN lower-cases to k) fold as
// .NET's OrdinalIgnoreCase folds them. It returns p itself when p has no
// letter to fold (the common all-lower-case ASCII path costs one scan).
func foldPathCase(p string) string {
	upper := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c >= 0x80:
			return strings.ToLower(strings.ToUpper(p))
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	if !upper {
		return p
	}
	return ASCIILower(p) // ASCII only: one allocation
}

// first returns the position of the first rule, in config order, that
// matches, or -1.
func (p *Pipeline) first(host, path, method string, accept func(int) bool) int {
	if p.linear != nil {
		return firstLinear(p.linear, host, path, method, accept)
	}
	return p.index.first(host, path, method, accept)
}

// firstLinear is first by trying every rule's matcher in order: the
// definition the index must agree with, and the oracle of its differential
// tests.
func firstLinear(ms []*matcher, host, path, method string, accept func(int) bool) int {
	for i, m := range ms {
		if m.matches(host, path, method) && (m.extra == nil || accept(i)) {
			return i
		}
	}
	return -1
}

// normalise canonicalises the request's method, host and path in place and
// returns a reason when the request cannot be evaluated safely.
func (p *Pipeline) normalise(r *Request) string {
	if r.Method == "" || r.Path == "" {
		return "missing_request_attributes"
	}
	r.Method = asciiUpper(r.Method)
	host, err := CanonicalHost(r.Host)
	if err != nil {
		return err.Error()
	}
	r.Host = host
	path, err := CanonicalPath(r.Path, p.allowEncoded)
	if err != nil {
		return err.Error()
	}
	r.Path = path
	return ""
}

// authenticate tries the rule's authenticators in order. The first that
// accepts its credential wins. When none does, an authenticator that could
// not decide makes the request Unavailable (it might have accepted);
// otherwise the most specific rejection is returned.
func (p *Pipeline) authenticate(ctx context.Context, r *Request, ru *rule, scan *headerScan) (*Identity, *Authenticator, error) {
	var rejected, unavailable error
	for _, a := range ru.authn {
		cred, ok := a.Source.extract(r, scan)
		if !ok {
			continue
		}
		if cred == "" {
			rejected = firstSpecific(rejected, tokens.ErrMalformed)
			continue
		}
		vctx, span := ctx, trace.Span(nil)
		if p.tracing(ctx) { // else the attribute would be built (and escape) for nothing
			vctx, span = p.startSpan(ctx, "ext_authz.verify", attribute.String("ext_authz.authenticator", a.Name))
		}
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
