package authz

import (
	"context"
	"errors"
	"net/netip"
	"regexp"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
)

// Limiter decides rate limits; *ratelimit.Limiter is one.
//
// Check returns the decision for every descriptor. A non-nil error means
// the limiter's store failed; the Result is then what the domain's failure
// policy says (allow, 429 or 503), and the pipeline acts on it. Check must
// be safe for concurrent use.
type Limiter interface {
	Check(ctx context.Context, req ratelimit.Request) (ratelimit.Result, error)
}

// RateLimits says which descriptors a rule sends to the limiter. They are
// built like Envoy's route rate_limits: each descriptor is a list of
// actions, each action adds one entry.
//
//	rate_limits:
//	  domain: gateway
//	  descriptors:
//	    - actions: [{generic_key: {descriptor_value: api}}, {identity: {field: subject, descriptor_key: user}}]
//	    - actions: [{remote_address: {}}]
type RateLimits struct {
	// Domain is the envoyproxy/ratelimit domain the descriptors belong to.
	Domain      string                `yaml:"domain"`
	Descriptors []RateLimitDescriptor `yaml:"descriptors"`
}

// RateLimitDescriptor is one descriptor: its actions, in order.
type RateLimitDescriptor struct {
	Actions []RateLimitAction `yaml:"actions"`
	// Plan, when set, names a descriptor of the rate-limit plans
	// (rate_limit.plans, rate_limit.quotas): the descriptor is limited by
	// the caller's plan's rates for that name (and quota claim), instead
	// of by the rate-limit files.
	Plan string `yaml:"plan"`
}

// RateLimitAction sets exactly one field. Names and defaults mirror Envoy's
// route.v3.RateLimit.Action. When an action cannot produce its value the
// whole descriptor is dropped, unless the action sets skip_if_absent, which
// drops only its entry.
type RateLimitAction struct {
	GenericKey          *GenericKeyAction          `yaml:"generic_key"`
	RemoteAddress       *struct{}                  `yaml:"remote_address"`
	MaskedRemoteAddress *MaskedRemoteAddressAction `yaml:"masked_remote_address"`
	RequestHeaders      *RequestHeadersAction      `yaml:"request_headers"`
	HeaderValueMatch    *HeaderValueMatchAction    `yaml:"header_value_match"`
	Path                *KeyAction                 `yaml:"path"`
	Method              *KeyAction                 `yaml:"method"`
	ContextExtension    *ContextExtensionAction    `yaml:"context_extension"`
	Identity            *IdentityAction            `yaml:"identity"`
}

// GenericKeyAction adds a constant entry.
type GenericKeyAction struct {
	DescriptorKey   string `yaml:"descriptor_key"` // default generic_key
	DescriptorValue string `yaml:"descriptor_value"`
}

// MaskedRemoteAddressAction adds ("masked_remote_address", client address
// masked to a prefix, e.g. "192.0.2.0/24").
type MaskedRemoteAddressAction struct {
	V4PrefixMaskLen *int `yaml:"v4_prefix_mask_len"` // default 32
	V6PrefixMaskLen *int `yaml:"v6_prefix_mask_len"` // default 128
}

// RequestHeadersAction adds (descriptor_key, value of header_name).
// ":path", ":method" and ":authority" name the request's path, method and
// host.
type RequestHeadersAction struct {
	HeaderName    string `yaml:"header_name"`
	DescriptorKey string `yaml:"descriptor_key"`
	SkipIfAbsent  bool   `yaml:"skip_if_absent"`
}

// HeaderValueMatchAction adds (descriptor_key, descriptor_value) when the
// headers match (or, with expect_match false, when they do not); otherwise
// the descriptor is dropped.
type HeaderValueMatchAction struct {
	DescriptorKey   string          `yaml:"descriptor_key"` // default header_match
	DescriptorValue string          `yaml:"descriptor_value"`
	ExpectMatch     *bool           `yaml:"expect_match"` // default true
	Headers         []HeaderMatcher `yaml:"headers"`
}

// HeaderMatcher matches one header; set at most one of the match fields
// (none: the header must be present).
type HeaderMatcher struct {
	Name        string `yaml:"name"`
	Exact       string `yaml:"exact"`
	Prefix      string `yaml:"prefix"`
	Suffix      string `yaml:"suffix"`
	Contains    string `yaml:"contains"`
	Regex       string `yaml:"regex"` // RE2, must match the whole value
	Present     *bool  `yaml:"present"`
	InvertMatch bool   `yaml:"invert_match"`
}

// KeyAction adds (descriptor_key, a request attribute).
type KeyAction struct {
	DescriptorKey string `yaml:"descriptor_key"` // default: the action's name
}

// ContextExtensionAction adds (descriptor_key, a context extension the
// gateway set on the route).
type ContextExtensionAction struct {
	Key           string `yaml:"key"`
	DescriptorKey string `yaml:"descriptor_key"` // default: key
	SkipIfAbsent  bool   `yaml:"skip_if_absent"`
}

// IdentityAction adds (descriptor_key, a part of the authenticated
// identity): subject, app_id, issuer, method or claim:<name>. Anonymous
// requests have none.
type IdentityAction struct {
	Field         string `yaml:"field"`
	DescriptorKey string `yaml:"descriptor_key"` // default: the field ("claim:x" → x)
	SkipIfAbsent  bool   `yaml:"skip_if_absent"`
}

// compile checks the rate limits and returns their compiled form (nil when
// the rule has none). It is their only validator: NewPipeline uses what it
// returns, so each action is compiled once.
func (c *RateLimits) compile() (*rateLimits, error) {
	if c.Domain == "" && len(c.Descriptors) == 0 {
		return nil, nil
	}
	var errs []error
	if c.Domain == "" {
		errs = append(errs, yamlfile.Errorf("domain", "required"))
	}
	if len(c.Descriptors) == 0 {
		errs = append(errs, yamlfile.Errorf("descriptors", "at least one descriptor is required"))
	}
	out := &rateLimits{domain: c.Domain, descriptors: make([][]action, 0, len(c.Descriptors)), plans: make([]string, 0, len(c.Descriptors))}
	for i := range c.Descriptors {
		p := yamlfile.Index("descriptors", i)
		if len(c.Descriptors[i].Actions) == 0 {
			errs = append(errs, yamlfile.Errorf(p+".actions", "at least one action is required"))
		}
		acts := make([]action, 0, len(c.Descriptors[i].Actions))
		for j := range c.Descriptors[i].Actions {
			a, err := compileAction(&c.Descriptors[i].Actions[j])
			errs = append(errs, yamlfile.Wrap(yamlfile.Index(p+".actions", j), err))
			acts = append(acts, a)
		}
		out.descriptors = append(out.descriptors, acts)
		out.plans = append(out.plans, c.Descriptors[i].Plan)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// action kinds.
const (
	actGeneric = iota
	actRemote
	actMasked
	actHeader
	actPath
	actMethod
	actHost
	actHeaderMatch
	actContext
	actIdentity
)

type action struct {
	kind  int
	key   string // descriptor key
	value string // constant value (generic_key, header_value_match)
	name  string // header name, context extension key, identity field, claim
	skip  bool   // skip_if_absent
	v4    int
	v6    int
	match []headerMatch
	want  bool // expect_match
}

type headerMatch struct {
	name                              string
	exact, prefix, suffix, contains   string
	re                                *regexp.Regexp
	presentOnly, mustBeAbsent, invert bool
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func compileAction(a *RateLimitAction) (action, error) {
	var out action
	n := 0
	var errs []error
	if g := a.GenericKey; g != nil {
		n++
		out = action{kind: actGeneric, key: orDefault(g.DescriptorKey, "generic_key"), value: g.DescriptorValue}
		if g.DescriptorValue == "" {
			errs = append(errs, yamlfile.Errorf("generic_key.descriptor_value", "required"))
		}
	}
	if a.RemoteAddress != nil {
		n++
		out = action{kind: actRemote, key: "remote_address"}
	}
	if m := a.MaskedRemoteAddress; m != nil {
		n++
		out = action{kind: actMasked, key: "masked_remote_address", v4: 32, v6: 128}
		if m.V4PrefixMaskLen != nil {
			out.v4 = *m.V4PrefixMaskLen
		}
		if m.V6PrefixMaskLen != nil {
			out.v6 = *m.V6PrefixMaskLen
		}
		if out.v4 < 0 || out.v4 > 32 {
			errs = append(errs, yamlfile.Errorf("masked_remote_address.v4_prefix_mask_len", "%d: must be 0..32", out.v4))
		}
		if out.v6 < 0 || out.v6 > 128 {
			errs = append(errs, yamlfile.Errorf("masked_remote_address.v6_prefix_mask_len", "%d: must be 0..128", out.v6))
		}
	}
	if h := a.RequestHeaders; h != nil {
		n++
		name := strings.ToLower(h.HeaderName)
		out = action{kind: actHeader, key: h.DescriptorKey, name: name, skip: h.SkipIfAbsent}
		switch name {
		case ":path":
			out.kind = actPath
		case ":method":
			out.kind = actMethod
		case ":authority", "host":
			out.kind = actHost
		case "authorization", "cookie", "proxy-authorization":
			errs = append(errs, yamlfile.Errorf("request_headers.header_name", "%q carries credentials: descriptor values reach the store and metrics; use an identity action", name))
		case "":
			errs = append(errs, yamlfile.Errorf("request_headers.header_name", "required"))
		}
		if h.DescriptorKey == "" {
			errs = append(errs, yamlfile.Errorf("request_headers.descriptor_key", "required"))
		}
	}
	if m := a.HeaderValueMatch; m != nil {
		n++
		out = action{kind: actHeaderMatch, key: orDefault(m.DescriptorKey, "header_match"), value: m.DescriptorValue, want: m.ExpectMatch == nil || *m.ExpectMatch}
		if m.DescriptorValue == "" {
			errs = append(errs, yamlfile.Errorf("header_value_match.descriptor_value", "required"))
		}
		if len(m.Headers) == 0 {
			errs = append(errs, yamlfile.Errorf("header_value_match.headers", "at least one header is required"))
		}
		for i, hm := range m.Headers {
			c, err := compileHeaderMatch(hm)
			if err != nil {
				errs = append(errs, yamlfile.Wrap(yamlfile.Index("header_value_match.headers", i), err))
			}
			out.match = append(out.match, c)
		}
	}
	if k := a.Path; k != nil {
		n++
		out = action{kind: actPath, key: orDefault(k.DescriptorKey, "path")}
	}
	if k := a.Method; k != nil {
		n++
		out = action{kind: actMethod, key: orDefault(k.DescriptorKey, "method")}
	}
	if c := a.ContextExtension; c != nil {
		n++
		out = action{kind: actContext, key: orDefault(c.DescriptorKey, c.Key), name: c.Key, skip: c.SkipIfAbsent}
		if c.Key == "" {
			errs = append(errs, yamlfile.Errorf("context_extension.key", "required"))
		}
	}
	if id := a.Identity; id != nil {
		n++
		out = action{kind: actIdentity, name: id.Field, skip: id.SkipIfAbsent}
		field, claim, isClaim := strings.Cut(id.Field, ":")
		switch {
		case isClaim && field == "claim" && claim != "":
			out.key = orDefault(id.DescriptorKey, claim)
		case !isClaim && (field == "subject" || field == "app_id" || field == "issuer" || field == "method"):
			out.key = orDefault(id.DescriptorKey, field)
		default:
			errs = append(errs, yamlfile.Errorf("identity.field", "%q is not one of subject, app_id, issuer, method, claim:<name>", id.Field))
		}
	}
	switch n {
	case 0:
		errs = append(errs, yamlfile.Errorf("", "set one of generic_key, remote_address, masked_remote_address, request_headers, header_value_match, path, method, context_extension, identity"))
	case 1:
	default:
		errs = append(errs, yamlfile.Errorf("", "set exactly one action, not %d", n))
	}
	return out, errors.Join(errs...)
}

func compileHeaderMatch(h HeaderMatcher) (headerMatch, error) {
	out := headerMatch{name: strings.ToLower(h.Name), exact: h.Exact, prefix: h.Prefix, suffix: h.Suffix, contains: h.Contains, invert: h.InvertMatch}
	var errs []error
	if h.Name == "" {
		errs = append(errs, yamlfile.Errorf("name", "required"))
	}
	n := 0
	for _, s := range []string{h.Exact, h.Prefix, h.Suffix, h.Contains, h.Regex} {
		if s != "" {
			n++
		}
	}
	if h.Regex != "" {
		re, err := compileFullMatch(h.Regex)
		if err != nil {
			errs = append(errs, yamlfile.Errorf("regex", "%v", err))
		}
		out.re = re
	}
	if h.Present != nil {
		n++
		out.presentOnly = *h.Present
		out.mustBeAbsent = !*h.Present
	}
	if n > 1 {
		errs = append(errs, yamlfile.Errorf("", "set at most one of exact, prefix, suffix, contains, regex, present"))
	}
	if n == 0 {
		out.presentOnly = true
	}
	return out, errors.Join(errs...)
}

func (m *headerMatch) matches(r *Request) bool {
	v, ok := r.Headers[m.name]
	var res bool
	switch {
	case m.mustBeAbsent:
		res = !ok
	case !ok:
		res = false
	case m.presentOnly:
		res = true
	case m.exact != "":
		res = v == m.exact
	case m.prefix != "":
		res = strings.HasPrefix(v, m.prefix)
	case m.suffix != "":
		res = strings.HasSuffix(v, m.suffix)
	case m.contains != "":
		res = strings.Contains(v, m.contains)
	case m.re != nil:
		res = m.re.MatchString(v)
	}
	return res != m.invert
}

// rateLimits is a rule's compiled RateLimits.
type rateLimits struct {
	domain      string
	descriptors [][]action
	plans       []string // per descriptor: its plan descriptor name, or ""
}

// build returns the request's descriptors; id is nil for anonymous rules.
// plans is nil when none are configured (NewPipeline then refused rules
// whose descriptors name one).
func (rl *rateLimits) build(r *Request, id *Identity, hops int, plans *ratelimit.Plans) []ratelimit.Descriptor {
	out := make([]ratelimit.Descriptor, 0, len(rl.descriptors))
next:
	for k, acts := range rl.descriptors {
		entries := make([]ratelimit.Entry, 0, len(acts))
		for i := range acts {
			a := &acts[i]
			v, ok := a.produce(r, id, hops)
			switch {
			case ok:
				entries = append(entries, ratelimit.Entry{Key: a.key, Value: v})
			case a.skip:
			default:
				continue next
			}
		}
		if len(entries) == 0 {
			continue
		}
		d := ratelimit.Descriptor{Entries: entries, Hits: 1}
		if name := rl.plans[k]; name != "" && plans != nil {
			d.Limits = planLimits(plans, id, name)
		}
		out = append(out, d)
	}
	return out
}

// value4 produces the action's value for r, or false when it cannot.
func (a *action) produce(r *Request, id *Identity, hops int) (string, bool) {
	switch a.kind {
	case actGeneric:
		return a.value, true
	case actRemote:
		ip, ok := ClientAddress(r, hops)
		if !ok {
			return "", false
		}
		return ip.String(), true
	case actMasked:
		ip, ok := ClientAddress(r, hops)
		if !ok {
			return "", false
		}
		bits := a.v6
		if ip.Is4() {
			bits = a.v4
		}
		p, err := ip.Prefix(bits)
		if err != nil {
			return "", false
		}
		return p.String(), true
	case actHeader:
		v, ok := r.Headers[a.name]
		return v, ok
	case actPath:
		return r.Path, r.Path != ""
	case actMethod:
		return r.Method, r.Method != ""
	case actHost:
		return r.Host, r.Host != ""
	case actHeaderMatch:
		all := true
		for i := range a.match {
			if !a.match[i].matches(r) {
				all = false
				break
			}
		}
		return a.value, all == a.want
	case actContext:
		v, ok := r.ContextExtensions[a.name]
		return v, ok
	case actIdentity:
		if id == nil {
			return "", false
		}
		var v string
		switch a.name {
		case "subject":
			v = id.Subject
		case "app_id":
			v = id.AppID
		case "issuer":
			v = id.Issuer
		case "method":
			v = id.Method
		default:
			s, ok := claimString(id.Claims[strings.TrimPrefix(a.name, "claim:")])
			if !ok {
				return "", false
			}
			v = s
		}
		return v, v != ""
	}
	return "", false
}

// ClientAddress is the client's IP as Envoy determines it with
// xff_num_trusted_hops: the gateway appends its direct peer to
// x-forwarded-for, so with N trusted proxies in front of it the client is
// the (N+1)th address from the right. With N = 0, or when the header has
// too few addresses, it is the direct peer.
func ClientAddress(r *Request, hops int) (netip.Addr, bool) {
	if hops > 0 {
		xff := r.Headers["x-forwarded-for"]
		for i := 0; i <= hops && xff != ""; i++ {
			j := strings.LastIndexByte(xff, ',')
			part := strings.TrimSpace(xff[j+1:])
			if i == hops {
				return parseIP(part)
			}
			if j < 0 {
				break
			}
			xff = xff[:j]
		}
	}
	return parseIP(r.PeerAddress)
}

func parseIP(s string) (netip.Addr, bool) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// applyRateLimits runs the rule's limits. It returns true when the request
// is denied, with d turned into the denial.
func (p *Pipeline) applyRateLimits(ctx context.Context, r *Request, ru *rule, d *Decision, id *Identity) bool {
	if ru.limits == nil || p.limiter == nil {
		return false
	}
	descs := ru.limits.build(r, id, p.xffHops, p.plans)
	if len(descs) == 0 {
		return false
	}
	lctx, span := ctx, trace.Span(nil)
	if p.tracing(ctx) {
		lctx, span = p.startSpan(ctx, "ext_authz.rate_limit",
			attribute.String("ext_authz.domain", ru.limits.domain), attribute.Int("ext_authz.descriptors", len(descs)))
	}
	res, _ := p.limiter.Check(lctx, ratelimit.Request{Domain: ru.limits.domain, Descriptors: descs})
	endSpan(span, res.Code.String(), res.Failed)
	if st := res.Deciding(); st != nil {
		d.RateLimitPolicy = ratelimit.PolicyItem(st.Limit)
	}
	// The limiter counts store failures in its metrics; res already holds
	// what the domain's failure policy says.
	switch res.Code {
	case ratelimit.OverLimit:
		reason := "rate_limited"
		if res.Failed {
			reason = "rate_limit_unavailable"
		}
		*d = p.deny(*d, RateLimited, reason)
		d.ResponseHeaders = appendRateLimitHeaders(d.ResponseHeaders, res.Headers(p.rlHeaders))
		return true
	case ratelimit.Unavailable:
		*d = p.deny(*d, Unavailable, "rate_limit_unavailable")
		return true
	}
	if p.rlOnAllow {
		d.ResponseHeaders = appendRateLimitHeaders(d.ResponseHeaders, res.Headers(p.rlHeaders))
	}
	return false
}

func appendRateLimitHeaders(dst []Header, hs []ratelimit.Header) []Header {
	for _, h := range hs {
		dst = append(dst, Header{Name: h.Name, Value: h.Value})
	}
	return dst
}
