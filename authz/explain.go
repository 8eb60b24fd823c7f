package authz

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/tokens"
)

// Explanation is how the pipeline decides one request, step by step: for
// an operator (ext-authz check --explain) and for policy tests. It holds
// no credential: credentials are reported as present or absent, claim
// values are left out (their names are listed; condition errors lose
// the values they quote), and any text that contains a credential the
// request carries has it replaced by [credential].
type Explanation struct {
	// Decision is what Decide decided (Decide runs on a copy of the
	// request).
	Decision Decision
	// Method, Host, Path are the request as rules match it (normalised);
	// Refused is the reason when it cannot be (then nothing else is set).
	Method, Host, Path string
	Refused            string
	// ClientAddress is the client address per xff_num_trusted_hops, ""
	// when there is none.
	ClientAddress string
	// Rules are the rules tried, in order, up to the one that decided (or
	// all of them when none did), with shadow rules among them. Without
	// Options.Explain only the deciding rule is listed, as RulesTried says.
	Rules []RuleTrace
	// RulesTried is false when the pipeline was built without
	// Options.Explain, so Rules lists only the deciding rule.
	RulesTried bool
	// Authenticators are the deciding rule's authenticators, in order, as
	// far as they were tried.
	Authenticators []AuthenticatorTrace
	// Identity is who the credential was verified as; Claims lists the
	// names of its claims only.
	Identity *IdentityTrace
	// Requirements are the deciding rule's require and when, each with
	// its outcome.
	Requirements []ConditionTrace
	// Descriptors are the rate-limit descriptors the deciding rule builds
	// for the request (counters are not touched).
	Descriptors []ratelimit.Descriptor
}

// RuleTrace is one rule as tried.
type RuleTrace struct {
	Name     string
	Position int
	Shadow   bool
	Matched  bool
	// Why says what did not match (host, path, method, client_cidrs,
	// context_extensions, match.when[i]); empty when it matched.
	Why string
	// Conditions are its match.when conditions, as far as they were
	// evaluated.
	Conditions []ConditionTrace
	// Shadow rules that matched: what they would have decided.
	WouldBe *ShadowDecision
}

// ConditionTrace is one requirement or condition and its outcome.
type ConditionTrace struct {
	Field  string // match.when[0], when[1], require.scopes, require.claims
	Expr   string // the CEL source, or the requirement's names
	Result string // true, false, error, cost_exceeded
	Error  string `json:",omitempty"`
	// Reads are the variables the expression read, with the value of
	// each request string (request.method=GET); maps, lists and the
	// principal's fields are named only.
	Reads []string `json:",omitempty"`
}

// AuthenticatorTrace is one authenticator of the deciding rule.
type AuthenticatorTrace struct {
	Name string
	// Credential: present, absent, or empty (the header is there without a
	// value). Never the credential itself.
	Credential string
	// Outcome: accepted, a rejection reason (tokens.Reason), unavailable,
	// or not_tried (an earlier one accepted).
	Outcome string
	Error   string `json:",omitempty"`
}

// IdentityTrace is the verified identity without claim values.
type IdentityTrace struct {
	Subject, Issuer, Method, AppID, Authenticator, Plan string
	Scopes                                              []string
	Claims                                              []string // names
}

// Explain decides r as Decide does and says how. It verifies the
// request's credentials again to report each authenticator's outcome,
// and asks the rate limiter without counting (hits 0). It does not
// modify r.
func (p *Pipeline) Explain(ctx context.Context, r *Request) Explanation {
	dr := *r
	var ex Explanation
	q := *p
	if q.limiter != nil {
		q.limiter = peekLimiter{p.limiter}
	}
	ex.Decision = q.Decide(ctx, &dr)
	rq := *r
	if reason := p.normalise(&rq); reason != "" {
		ex.Refused = reason
		return ex
	}
	ex.Method, ex.Host, ex.Path = rq.Method, rq.Host, rq.Path
	if ip, ok := ClientAddress(&rq, p.xffHops); ok {
		ex.ClientAddress = ip.String()
	}
	scan := requestScan(&rq)
	red := p.redactor(&rq, &scan)
	winner := -1
	if ex.Decision.Rule != "" {
		for i := range p.rules {
			if p.index.str(p.rules[i].name) == ex.Decision.Rule {
				winner = i
				break
			}
		}
	}
	ex.RulesTried = p.matchers != nil
	if p.matchers != nil {
		for i, m := range p.matchers {
			if winner >= 0 && i > winner {
				break
			}
			ex.Rules = append(ex.Rules, p.traceRule(ctx, &rq, i, m, &scan, red))
		}
	} else if winner >= 0 {
		ex.Rules = append(ex.Rules, RuleTrace{Name: ex.Decision.Rule, Position: winner, Matched: true})
	}
	if winner < 0 {
		return ex
	}
	ru := p.rule(winner)
	var id *Identity
	if ru.action == ActionAuthenticate {
		id = p.traceAuthn(ctx, &rq, &ru, &scan, &ex, red)
		if id == nil {
			return ex
		}
		ex.Identity = &IdentityTrace{Subject: id.Subject, Issuer: id.Issuer, Method: id.Method, AppID: id.AppID,
			Authenticator: id.Authenticator, Plan: id.Plan, Scopes: id.Scopes}
		for k := range id.Claims {
			ex.Identity.Claims = append(ex.Identity.Claims, k)
		}
		slices.Sort(ex.Identity.Claims)
		if len(ru.require.Scopes) > 0 {
			ex.Requirements = append(ex.Requirements, requirementTrace("require.scopes", strings.Join(ru.require.Scopes, " "),
				ru.require.check(&id.Principal) != "insufficient_scope"))
		}
		if len(ru.require.Claims) > 0 {
			names := make([]string, 0, len(ru.require.Claims))
			for k := range ru.require.Claims {
				names = append(names, k)
			}
			slices.Sort(names)
			ok := (&Requirements{Claims: ru.require.Claims}).check(&id.Principal) == ""
			ex.Requirements = append(ex.Requirements, requirementTrace("require.claims", strings.Join(names, " "), ok))
		}
	}
	la := lazyActivation{id: id, hops: p.xffHops}
	for j, c := range ru.when {
		ex.Requirements = append(ex.Requirements, traceCondition("when["+strconv.Itoa(j)+"]", c, la.get(&rq), red))
	}
	if ru.limits != nil {
		ex.Descriptors = ru.limits.build(&rq, id, p.xffHops, p.plans)
		for i := range ex.Descriptors {
			for j := range ex.Descriptors[i].Entries {
				e := &ex.Descriptors[i].Entries[j]
				e.Value = red(e.Value)
			}
		}
	}
	return ex
}

// peekLimiter asks the limiter without counting (every descriptor's Hits
// is 0): explaining a request must not spend its quota.
type peekLimiter struct{ l Limiter }

func (pl peekLimiter) Check(ctx context.Context, req ratelimit.Request) (ratelimit.Result, error) {
	descs := make([]ratelimit.Descriptor, len(req.Descriptors))
	copy(descs, req.Descriptors)
	for i := range descs {
		descs[i].Hits = 0
	}
	req.Descriptors = descs
	return pl.l.Check(ctx, req)
}

func requirementTrace(field, expr string, ok bool) ConditionTrace {
	res := "false"
	if ok {
		res = "true"
	}
	return ConditionTrace{Field: field, Expr: expr, Result: res}
}

// traceRule says whether rule i, of matcher m, matches r and why not.
func (p *Pipeline) traceRule(ctx context.Context, r *Request, i int, m *matcher, scan *headerScan, red func(string) string) RuleTrace {
	ru := p.rule(i)
	t := RuleTrace{Name: ru.name, Position: i, Shadow: ru.shadow != nil}
	switch {
	case !m.matchHost(r.Host):
		t.Why = "host"
	case !m.matchPath(r.Path):
		t.Why = "path"
	case !m.matchMethod(r.Method):
		t.Why = "method"
	}
	if t.Why != "" || m.extra == nil {
		t.Matched = t.Why == ""
		return t
	}
	x := m.extra
	la := lazyActivation{hops: p.xffHops}
	switch out, _, _ := x.check(r, p.xffHops, &la); out {
	case matchCIDR:
		t.Why = "client_cidrs"
	case matchContext:
		t.Why = "context_extensions"
	}
	if t.Why == "" {
		for j, c := range x.when {
			ct := traceCondition("match.when["+strconv.Itoa(j)+"]", c, la.get(r), red)
			t.Conditions = append(t.Conditions, ct)
			if ct.Result != "true" {
				t.Why = ct.Field
				if ct.Result != "false" {
					t.Why += " could not be evaluated, which denies the request (fail closed)"
				}
				break
			}
		}
	}
	t.Matched = t.Why == ""
	if t.Matched && t.Shadow {
		code, reason := p.wouldDecide(ctx, r, &ru, &lazyActivation{hops: p.xffHops}, scan)
		t.WouldBe = &ShadowDecision{Rule: ru.name, Code: code, Reason: reason}
	}
	return t
}

func traceCondition(field string, c *condition, a *condActivation, red func(string) string) ConditionTrace {
	t := ConditionTrace{Field: field, Expr: c.src}
	a.seen = func(name string) {
		read := name
		if v, ok := requestString(&a.req, a.hops, name); ok {
			read += "=" + red(v)
		}
		if !slices.Contains(t.Reads, read) {
			t.Reads = append(t.Reads, read)
		}
	}
	res, err := c.eval(a)
	a.seen = nil
	t.Result = [...]string{condFalse: "false", condTrue: "true", condError: "error", condCost: "cost_exceeded"}[res]
	if err != nil {
		// CEL quotes the values it could not use ("IP Address \"x\" parse
		// error"): they may be claim values, so they are left out.
		t.Error = quoted.ReplaceAllString(red(err.Error()), `"…"`)
	}
	return t
}

var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// traceAuthn tries the rule's authenticators as authenticate does and
// records each; it returns the identity of the first that accepts.
func (p *Pipeline) traceAuthn(ctx context.Context, r *Request, ru *rule, scan *headerScan, ex *Explanation, red func(string) string) *Identity {
	var id *Identity
	for _, a := range ru.authn {
		t := AuthenticatorTrace{Name: a.Name}
		cred, ok := a.Source.extract(r, scan)
		switch {
		case id != nil:
			t.Credential, t.Outcome = presence(ok, cred), "not_tried"
		case !ok:
			t.Credential, t.Outcome = "absent", tokens.ErrMissing.Reason
		case cred == "":
			t.Credential, t.Outcome = "empty", tokens.ErrMalformed.Reason
		default:
			t.Credential = "present"
			pr, err := a.Verifier.Verify(ctx, cred)
			switch {
			case err == nil:
				t.Outcome = "accepted"
				id = &Identity{Principal: pr, Authenticator: a.Name}
			case errors.Is(err, tokens.ErrInvalid):
				t.Outcome = tokens.Reason(err)
			default:
				t.Outcome, t.Error = "unavailable", red(err.Error())
			}
		}
		ex.Authenticators = append(ex.Authenticators, t)
	}
	if id != nil && ex.Decision.Identity != nil {
		id.Plan = ex.Decision.Identity.Plan
	}
	return id
}

// requestString is the value of a string variable of the request.
func requestString(r *Request, hops int, name string) (string, bool) {
	switch name {
	case "request.method":
		return r.Method, true
	case "request.host":
		return r.Host, true
	case "request.path":
		return r.Path, true
	case "request.scheme":
		return r.Scheme, true
	case "request.client_address":
		if ip, ok := ClientAddress(r, hops); ok {
			return ip.String(), true
		}
		return "", true
	case "request.source_principal":
		return r.SourcePrincipal, true
	}
	return "", false
}

func presence(ok bool, cred string) string {
	switch {
	case !ok:
		return "absent"
	case cred == "":
		return "empty"
	}
	return "present"
}

// redactor returns a function that replaces every credential the request
// carries for any of the pipeline's authenticators with [credential].
func (p *Pipeline) redactor(r *Request, scan *headerScan) func(string) string {
	var creds []string
	for _, a := range p.authenticators {
		if c, ok := a.Source.extract(r, scan); ok && c != "" {
			creds = append(creds, c)
		}
	}
	for _, h := range []string{"authorization", "cookie", "proxy-authorization"} {
		if v := r.Headers[h]; v != "" {
			creds = append(creds, v)
		}
	}
	return func(s string) string {
		for _, c := range creds {
			s = strings.ReplaceAll(s, c, "[credential]")
		}
		return s
	}
}

// String renders the explanation for a terminal.
func (ex *Explanation) String() string {
	var b strings.Builder
	if ex.Refused != "" {
		fmt.Fprintf(&b, "request refused before matching: %s\n", ex.Refused)
		fmt.Fprintf(&b, "decision: %s %s\n", ex.Decision.Code, ex.Decision.Reason)
		return b.String()
	}
	fmt.Fprintf(&b, "request: %s %s %s (client address %s)\n", ex.Method, ex.Host, ex.Path, orNone(ex.ClientAddress))
	if !ex.RulesTried {
		b.WriteString("rules: only the deciding rule is known (the pipeline keeps no matchers)\n")
	} else {
		b.WriteString("rules tried:\n")
	}
	for _, t := range ex.Rules {
		mode := ""
		if t.Shadow {
			mode = " (shadow)"
		}
		switch {
		case t.Matched && t.WouldBe != nil:
			fmt.Fprintf(&b, "  [%d] %s%s: matched; would decide %s %s; matching continues\n", t.Position, t.Name, mode, t.WouldBe.Code, t.WouldBe.Reason)
		case t.Matched:
			fmt.Fprintf(&b, "  [%d] %s%s: matched\n", t.Position, t.Name, mode)
		default:
			fmt.Fprintf(&b, "  [%d] %s%s: no match (%s)\n", t.Position, t.Name, mode, t.Why)
		}
		for _, c := range t.Conditions {
			writeCond(&b, "      ", c)
		}
	}
	for _, a := range ex.Authenticators {
		fmt.Fprintf(&b, "authenticator %s: credential %s, %s", a.Name, a.Credential, a.Outcome)
		if a.Error != "" {
			fmt.Fprintf(&b, " (%s)", a.Error)
		}
		b.WriteString("\n")
	}
	if id := ex.Identity; id != nil {
		fmt.Fprintf(&b, "identity: subject %q issuer %q via %s (%s)", id.Subject, id.Issuer, id.Authenticator, id.Method)
		if id.Plan != "" {
			fmt.Fprintf(&b, " plan %s", id.Plan)
		}
		fmt.Fprintf(&b, "; scopes [%s]; claims [%s] (values not shown)\n", strings.Join(id.Scopes, " "), strings.Join(id.Claims, " "))
	}
	for _, c := range ex.Requirements {
		writeCond(&b, "requirement ", c)
	}
	for _, d := range ex.Descriptors {
		parts := make([]string, len(d.Entries))
		for i, e := range d.Entries {
			parts[i] = e.Key + "=" + e.Value
		}
		fmt.Fprintf(&b, "rate-limit descriptor: %s\n", strings.Join(parts, ", "))
	}
	for _, s := range ex.Decision.Shadow {
		fmt.Fprintf(&b, "shadow %s would decide: %s %s\n", s.Rule, s.Code, s.Reason)
	}
	fmt.Fprintf(&b, "decision: %s %s", ex.Decision.Code, orNone(ex.Decision.Reason))
	if ex.Decision.Rule != "" {
		fmt.Fprintf(&b, " (rule %s)", ex.Decision.Rule)
	}
	b.WriteString("\n")
	return b.String()
}

func writeCond(b *strings.Builder, indent string, c ConditionTrace) {
	fmt.Fprintf(b, "%s%s %s: %s", indent, c.Field, quoteExpr.ReplaceAllString(c.Expr, " "), c.Result)
	if c.Error != "" {
		fmt.Fprintf(b, " (%s)", c.Error)
	}
	if len(c.Reads) > 0 {
		fmt.Fprintf(b, " [reads %s]", strings.Join(c.Reads, ", "))
	}
	b.WriteString("\n")
}

var quoteExpr = regexp.MustCompile(`\s*\n\s*`)

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
