package authz

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// requestMatch is the part of a rule's match beyond host, path and
// method: client address ranges, context extension values and match.when
// conditions. The rule index finds candidates by host, path and method
// and asks requestMatch of each one it would return, in the order it
// finds them; since every list the index scans is in rule order and a
// candidate that fails is skipped like one whose method differs, the
// first rule that passes both is the first rule of the policy that
// matches (index_test.go checks this against the linear scan).
type requestMatch struct {
	cidrs []netip.Prefix
	ctx   []ctxPair // sorted by key
	when  []*condition
	// never: the rule is a shadow rule, which the enforced match skips
	// (shadow.go evaluates it separately).
	never bool
}

type ctxPair struct{ key, value string }

// compileRequestMatch compiles client_cidrs, context_extensions and when
// of m, appending errors to errs. It returns nil when m has none.
func compileRequestMatch(m *MatchConfig, errs []error) (*requestMatch, []error) {
	if len(m.ClientCIDRs) == 0 && len(m.ContextExtensions) == 0 && len(m.When) == 0 {
		return nil, errs
	}
	out := &requestMatch{}
	for i, c := range m.ClientCIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("client_cidrs", i), "%q is not a CIDR range such as 10.0.0.0/8 or 2001:db8::/32", c))
			continue
		}
		if p.Addr().Is4In6() {
			// ClientAddress unmaps addresses, so ::ffff:10.0.0.0/104
			// would never match what it reads as.
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("client_cidrs", i), "%q is an IPv4-mapped range: write the IPv4 range", c))
			continue
		}
		if p.Masked() != p {
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("client_cidrs", i), "%q has host bits set: write %q", c, p.Masked().String()))
			continue
		}
		out.cidrs = append(out.cidrs, p)
	}
	for k, v := range m.ContextExtensions {
		if k == "" {
			errs = append(errs, yamlfile.Errorf("context_extensions", "empty key"))
			continue
		}
		out.ctx = append(out.ctx, ctxPair{k, v})
	}
	slices.SortFunc(out.ctx, func(a, b ctxPair) int { return strings.Compare(a.key, b.key) })
	when, err := compileConditions(m.When, false)
	if err != nil {
		errs = append(errs, yamlfile.Wrap("when", err))
	}
	out.when = when
	return out, errs
}

// validateConditions checks mode and when of the rule and compiles when.
func (r *RuleConfig) validateConditions() (when []*condition, shadow bool, err error) {
	var errs []error
	switch r.Mode {
	case "", ModeEnforce:
	case ModeShadow:
		shadow = true
	default:
		errs = append(errs, yamlfile.Errorf("mode", "%q is not one of enforce, shadow", r.Mode))
	}
	if len(r.When) > 0 {
		if r.Action == ActionDeny {
			errs = append(errs, yamlfile.Errorf("when", "a deny rule takes no when requirements: put request conditions in match.when"))
		} else {
			when, err = compileConditions(r.When, r.Action == ActionAuthenticate)
			if err != nil && r.Action != ActionAuthenticate && strings.Contains(err.Error(), "undeclared reference to 'principal'") {
				err = fmt.Errorf("%w (only an authenticate rule has a principal)", err)
			}
			errs = append(errs, yamlfile.Wrap("when", err))
		}
	}
	return when, shadow, errors.Join(errs...)
}

// Rule modes.
const (
	ModeEnforce = "enforce"
	ModeShadow  = "shadow"
)

// matchOutcome is why requestMatch.check passed or failed.
type matchOutcome uint8

const (
	matchOK matchOutcome = iota
	matchCIDR
	matchContext
	matchWhenFalse
	matchWhenError
)

// check reports whether r passes m; a condition that cannot be evaluated
// is matchWhenError (fail closed: the caller must not read it as "no
// match"). cond is the index of the deciding condition for when outcomes.
func (m *requestMatch) check(r *Request, hops int, act *lazyActivation) (out matchOutcome, cond int, err error) {
	if len(m.cidrs) > 0 {
		ip, ok := ClientAddress(r, hops)
		if !ok || !slices.ContainsFunc(m.cidrs, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return matchCIDR, -1, nil
		}
	}
	for _, kv := range m.ctx {
		if v, ok := r.ContextExtensions[kv.key]; !ok || v != kv.value {
			return matchContext, -1, nil
		}
	}
	if len(m.when) > 0 {
		a := act.get(r)
		for i, c := range m.when {
			switch res, err := c.eval(a); res {
			case condTrue:
			case condFalse:
				return matchWhenFalse, i, nil
			default:
				return matchWhenError, i, err
			}
		}
	}
	return matchOK, -1, nil
}

// String is for test failure messages.
func (m *requestMatch) String() string {
	if m == nil {
		return ""
	}
	srcs := make([]string, len(m.when))
	for i, c := range m.when {
		srcs[i] = c.src
	}
	return fmt.Sprintf(" cidrs=%v ctx=%v when=%q never=%v", m.cidrs, m.ctx, srcs, m.never)
}
