package authz

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// Config is the policy: identity headers and the ordered rules.
type Config struct {
	// Realm goes into WWW-Authenticate challenges. Default "ext-authz".
	Realm string `yaml:"realm"`
	// IdentityHeaders says which upstream request headers carry the
	// identity. Every one of them is removed from client requests.
	IdentityHeaders IdentityHeaders `yaml:"identity_headers"`
	// AllowEncodedSlashes lets paths contain %2F and %5C. Off by default:
	// an upstream that decodes them would route differently from the rules.
	AllowEncodedSlashes bool `yaml:"allow_encoded_slashes"`
	// CaseSensitivePaths says every upstream routes paths case-sensitively.
	// Off by default: a path whose case-folded form (/ADMIN → /admin)
	// picks a different rule is refused with 400 ambiguous_path, because
	// Express (by default), ASP.NET Core and IIS serve it from the
	// lower-case route.
	CaseSensitivePaths bool `yaml:"case_sensitive_paths"`
	// MethodOverride says what to do with X-HTTP-Method-Override and
	// friends: strip (default), reject or match (see method.go).
	MethodOverride string `yaml:"method_override"`
	// Rules are tried in order; the first match decides; no match denies.
	Rules []RuleConfig `yaml:"rules"`
}

// IdentityHeaders names the upstream request headers for the identity. An
// empty name means the default; "-" disables that header.
type IdentityHeaders struct {
	Subject string `yaml:"subject"` // default x-auth-subject
	Issuer  string `yaml:"issuer"`  // default x-auth-issuer
	Method  string `yaml:"method"`  // default x-auth-method
	AppID   string `yaml:"app_id"`  // default x-auth-app-id
	Scopes  string `yaml:"scopes"`  // default x-auth-scopes (space separated)
	// Claims maps a claim name to the header that carries its value.
	Claims map[string]string `yaml:"claims"`
	// AlsoRemove lists more headers the client may never send upstream,
	// such as headers of a legacy authorizer.
	AlsoRemove []string `yaml:"also_remove"`
}

// RuleConfig is one policy rule.
type RuleConfig struct {
	Name  string      `yaml:"name"`
	Match MatchConfig `yaml:"match"`
	// Action is allow (anonymous), deny, or authenticate.
	Action string `yaml:"action"`
	// Authenticators are tried in order for action authenticate.
	Authenticators []string `yaml:"authenticators"`
	// Require are requirements on the identity for action authenticate.
	Require Requirements `yaml:"require"`
	// RateLimits are checked once the rule allows the request (after
	// authentication and requirements); see ratelimit.go.
	RateLimits RateLimits `yaml:"rate_limits"`
	// When are CEL conditions the request (and, for action authenticate,
	// the principal) must meet once the rule matched: requirements, like
	// Require. See condition.go for where they sit in the decision.
	When []string `yaml:"when"`
	// Mode is enforce (default) or shadow: a shadow rule is evaluated when
	// reached, counted and logged, never enforced (see shadow.go).
	Mode string `yaml:"mode"`
}

// MatchConfig selects requests. Empty fields match everything.
type MatchConfig struct {
	// Hosts are exact host names or "*.example.com" wildcards ("*" alone
	// matches any host), matched against CanonicalHost: ports are ignored,
	// ASCII case is folded, a trailing dot is dropped. Non-ASCII names are
	// written in punycode ("xn--...").
	Hosts []string `yaml:"hosts"`
	// Path matches the path without the query string.
	Path PathMatch `yaml:"path"`
	// Methods are HTTP methods; empty matches any.
	Methods []string `yaml:"methods"`
	// ClientCIDRs are ranges the client address (see ClientAddress) must
	// be in; empty matches any.
	ClientCIDRs []string `yaml:"client_cidrs"`
	// ContextExtensions must each be present with exactly this value in
	// the gateway's context_extensions.
	ContextExtensions map[string]string `yaml:"context_extensions"`
	// When are CEL conditions over the request that must all hold for the
	// rule to match (see condition.go).
	When []string `yaml:"when"`
}

// PathMatch sets at most one of its fields. All match the canonical path
// (CanonicalPath: percent-decoded except %25 %2F %3F %23 %5C, dot segments
// removed, slashes merged), so Exact and Prefix must be written in that
// form.
type PathMatch struct {
	Exact  string `yaml:"exact"`
	Prefix string `yaml:"prefix"`
	// Regex is an RE2 expression that must match the whole canonical path.
	Regex string `yaml:"regex"`
}

// Requirements are conditions on an authenticated identity.
type Requirements struct {
	// Scopes must all be granted.
	Scopes []string `yaml:"scopes"`
	// Claims maps a claim to its accepted values; a list claim matches when
	// any of its elements is accepted.
	Claims map[string][]string `yaml:"claims"`
}

// Actions of a rule.
const (
	ActionAllow        = "allow"
	ActionDeny         = "deny"
	ActionAuthenticate = "authenticate"
)

// ApplyDefaults fills in default header names and realm.
func (c *Config) ApplyDefaults() {
	if c.Realm == "" {
		c.Realm = "ext-authz"
	}
	h := &c.IdentityHeaders
	for _, f := range []struct {
		p   *string
		def string
	}{
		{&h.Subject, "x-auth-subject"},
		{&h.Issuer, "x-auth-issuer"},
		{&h.Method, "x-auth-method"},
		{&h.AppID, "x-auth-app-id"},
		{&h.Scopes, "x-auth-scopes"},
	} {
		if *f.p == "" {
			*f.p = f.def
		}
	}
}

// Validate checks the policy. authenticators reports whether a name is a
// configured authenticator. Paths in errors are relative to the policy.
// It compiles the policy to check it (Compile), and drops the result.
func (c *Config) Validate(authenticators func(name string) bool) error {
	_, err := c.validate(authenticators)
	return err
}

// compiledRule is what validation compiled of one rule: NewPipeline builds
// the rule from it instead of compiling the RuleConfig again.
type compiledRule struct {
	match  *matcher
	limits *rateLimits // nil when the rule has no rate limits
	when   []*condition
	shadow bool
}

// validate is Validate that also returns the rules' compiled matchers and
// rate limits (in rule order), so NewPipeline compiles each regex once.
func (c *Config) validate(authenticators func(name string) bool) ([]compiledRule, error) {
	var errs []error
	compiled := make([]compiledRule, len(c.Rules))
	if strings.ContainsAny(c.Realm, "\"\\\r\n") {
		errs = append(errs, yamlfile.Errorf("realm", "must not contain quotes, backslashes or line breaks"))
	}
	errs = append(errs, yamlfile.Wrap("identity_headers", c.IdentityHeaders.validate()))
	switch c.MethodOverride {
	case "", MethodOverrideStrip, MethodOverrideReject, MethodOverrideMatch:
	default:
		errs = append(errs, yamlfile.Errorf("method_override", "%q is not one of strip, reject, match", c.MethodOverride))
	}
	if len(c.Rules) == 0 {
		errs = append(errs, yamlfile.Errorf("rules", "at least one rule is required (no match denies everything)"))
	}
	seen := map[string]int{}
	for i := range c.Rules {
		p := yamlfile.Index("rules", i)
		r := &c.Rules[i]
		if j, dup := seen[r.Name]; dup && r.Name != "" {
			errs = append(errs, yamlfile.Errorf(p+".name", "%q is also the name of rules[%d]", r.Name, j))
		}
		seen[r.Name] = i
		cr, err := r.validate(authenticators)
		compiled[i] = cr
		errs = append(errs, yamlfile.Wrap(p, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return compiled, nil
}

func (h *IdentityHeaders) validate() error {
	var errs []error
	check := func(path, name string) {
		if name != "-" && !validHeaderName(name) {
			errs = append(errs, yamlfile.Errorf(path, "%q is not a valid header name", name))
		}
		if isProtectedHeader(name) {
			errs = append(errs, yamlfile.Errorf(path, "%q cannot carry identity", name))
		}
		if strings.Contains(name, "_") {
			// nginx drops such headers by default, and the gateway is
			// configured to refuse them from clients.
			errs = append(errs, yamlfile.Errorf(path, "%q: use '-' instead of '_' (many proxies drop names with underscores)", name))
		}
	}
	check("subject", h.Subject)
	check("issuer", h.Issuer)
	check("method", h.Method)
	check("app_id", h.AppID)
	check("scopes", h.Scopes)
	for claim, name := range h.Claims {
		if claim == "" {
			errs = append(errs, yamlfile.Errorf("claims", "empty claim name"))
		}
		check("claims."+claim, name)
	}
	for i, name := range h.AlsoRemove {
		check(yamlfile.Index("also_remove", i), name)
	}
	return errors.Join(errs...)
}

// isProtectedHeader reports headers Envoy will not let an authorizer
// remove, or that would break the request if they carried identity.
func isProtectedHeader(name string) bool {
	switch ASCIILower(name) {
	case "host", "authorization", "cookie", "content-length", "transfer-encoding", "connection":
		return true
	}
	return strings.HasPrefix(name, ":")
}

// validate checks the rule and returns its compiled match and rate limits
// (each nil when invalid).
func (r *RuleConfig) validate(authenticators func(string) bool) (compiledRule, error) {
	var errs []error
	if r.Name == "" {
		errs = append(errs, yamlfile.Errorf("name", "required"))
	} else if strings.ContainsAny(r.Name, " \t\r\n\"") {
		errs = append(errs, yamlfile.Errorf("name", "%q must not contain spaces or quotes", r.Name))
	}
	m, err := compileMatch(&r.Match)
	if err != nil {
		errs = append(errs, yamlfile.Wrap("match", err))
	}
	if r.Mode == ModeShadow && m != nil {
		markShadow(m)
	}
	limits, err := r.RateLimits.compile()
	errs = append(errs, yamlfile.Wrap("rate_limits", err))
	switch r.Action {
	case ActionAllow, ActionDeny:
		if len(r.Authenticators) > 0 || len(r.Require.Scopes) > 0 || len(r.Require.Claims) > 0 {
			errs = append(errs, yamlfile.Errorf("action", "%s takes no authenticators or require", r.Action))
		}
		if r.Action == ActionDeny && len(r.RateLimits.Descriptors) > 0 {
			errs = append(errs, yamlfile.Errorf("rate_limits", "a deny rule takes no rate limits"))
		}
	case ActionAuthenticate:
		if len(r.Authenticators) == 0 {
			errs = append(errs, yamlfile.Errorf("authenticators", "required for action authenticate"))
		}
		for i, name := range r.Authenticators {
			if !authenticators(name) {
				errs = append(errs, yamlfile.Errorf(yamlfile.Index("authenticators", i), "no authenticator named %q", name))
			}
		}
		for claim, values := range r.Require.Claims {
			if len(values) == 0 {
				errs = append(errs, yamlfile.Errorf("require.claims."+claim, "list at least one accepted value"))
			}
		}
	case "":
		errs = append(errs, yamlfile.Errorf("action", "required: allow, deny or authenticate"))
	default:
		errs = append(errs, yamlfile.Errorf("action", "%q is not one of allow, deny, authenticate", r.Action))
	}
	when, shadow, err := r.validateConditions()
	errs = append(errs, err)
	return compiledRule{match: m, limits: limits, when: when, shadow: shadow}, errors.Join(errs...)
}

func compileMatch(m *MatchConfig) (*matcher, error) {
	var errs []error
	out := &matcher{}
	for i, h := range m.Hosts {
		p := yamlfile.Index("hosts", i)
		switch {
		case h == "*":
			out.anyHost = true
		case strings.HasPrefix(h, "*."):
			d, err := CanonicalHost(h[2:])
			if err != nil || strings.ContainsAny(h[2:], ":[") {
				errs = append(errs, yamlfile.Errorf(p, "%q: a wildcard is \"*.\" followed by a domain (ASCII; punycode for other names)", h))
				continue
			}
			out.suffixes = append(out.suffixes, "."+d)
		default:
			c, err := CanonicalHost(h)
			if err != nil {
				errs = append(errs, yamlfile.Errorf(p, "%q is not a host name or \"*.domain\" wildcard (ASCII; punycode for other names)", h))
				continue
			}
			out.exact = append(out.exact, c)
		}
	}
	if len(m.Hosts) == 0 {
		out.anyHost = true
	}
	n := 0
	if m.Path.Exact != "" {
		n++
		out.pathExact = m.Path.Exact
	}
	if m.Path.Prefix != "" {
		n++
		out.pathPrefix = m.Path.Prefix
	}
	if m.Path.Regex != "" {
		n++
		re, err := compileFullMatch(m.Path.Regex)
		if err != nil {
			errs = append(errs, yamlfile.Errorf("path.regex", "%v", err))
		}
		out.pathRegex, out.pathRegexSrc = re, m.Path.Regex
	}
	if n > 1 {
		errs = append(errs, yamlfile.Errorf("path", "set at most one of exact, prefix, regex"))
	}
	for _, p := range []struct{ field, v string }{{"path.exact", m.Path.Exact}, {"path.prefix", m.Path.Prefix}} {
		switch c, err := CanonicalPath(p.v, true); {
		case p.v == "":
		case !strings.HasPrefix(p.v, "/"):
			errs = append(errs, yamlfile.Errorf(p.field, "%q must start with /", p.v))
		case err != nil:
			errs = append(errs, yamlfile.Errorf(p.field, "%q: %v: requests to it are always refused", p.v, err))
		case c != p.v:
			errs = append(errs, yamlfile.Errorf(p.field, "%q is not in canonical form, which is what rules match: write %q", p.v, c))
		}
	}
	for i, meth := range m.Methods {
		up := asciiUpper(meth)
		if !validHeaderName(up) {
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("methods", i), "%q is not an HTTP method", meth))
			continue
		}
		out.methods = append(out.methods, up)
	}
	out.extra, errs = compileRequestMatch(m, errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// matcher is a compiled MatchConfig: what validation hands to the rule
// index, and the definition of a match the index is tested against (the
// pipeline keeps the index, not the matchers).
type matcher struct {
	anyHost      bool
	exact        []string
	suffixes     []string // ".example.com"
	pathExact    string
	pathPrefix   string
	pathRegex    *regexp.Regexp // ^(?:pathRegexSrc)$
	pathRegexSrc string
	methods      []string
	// extra is what is matched on the request beyond host, path and
	// method (client_cidrs, context_extensions, when), nil when nothing:
	// the index checks it on each candidate (see requestMatch).
	extra *requestMatch
}

func (m *matcher) matches(host, path, method string) bool {
	return m.matchHost(host) && m.matchPath(path) && m.matchMethod(method)
}

func (m *matcher) matchHost(host string) bool {
	if m.anyHost {
		return true
	}
	for _, h := range m.exact {
		if h == host {
			return true
		}
	}
	for _, s := range m.suffixes {
		if len(host) > len(s) && strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

func (m *matcher) matchPath(path string) bool {
	switch {
	case m.pathExact != "":
		return path == m.pathExact
	case m.pathPrefix != "":
		return strings.HasPrefix(path, m.pathPrefix)
	case m.pathRegex != nil:
		return m.pathRegex.MatchString(path)
	}
	return true
}

func (m *matcher) matchMethod(method string) bool {
	if len(m.methods) == 0 {
		return true
	}
	for _, x := range m.methods {
		if x == method {
			return true
		}
	}
	return false
}

// String is for test failure messages.
func (m *matcher) String() string {
	return fmt.Sprintf("hosts=%v%v path=%q|%q|%v methods=%v%v", m.exact, m.suffixes, m.pathExact, m.pathPrefix, m.pathRegex, m.methods, m.extra)
}

// compileFullMatch compiles src to match whole strings only, as Envoy's
// safe_regex (RE2 full match) does. src must be a regular expression on
// its own: wrapped unchecked in ^(?:src)$, a source such as "a)|(.*" would
// close the group early and compile to ^(?:a)|(.*)$, which matches every
// path while reading like a narrow rule.
//
// A src that ends inside \Q (RE2 and Go quote to the end of the regex
// then) would quote the wrapper's ")$" as well and not compile; \E closes
// the quote where src ends. Appending \E rescues nothing else: outside a
// quote it is an invalid escape.
func compileFullMatch(src string) (*regexp.Regexp, error) {
	if _, err := syntax.Parse(src, syntax.Perl); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(`^(?:` + src + `)$`)
	if err != nil {
		if quoted, qerr := regexp.Compile(`^(?:` + src + `\E)$`); qerr == nil {
			return quoted, nil
		}
	}
	return re, err
}
