package authz

import (
	"context"
	"errors"

	"github.com/ext-authz/ext-authz/tokens"
)

// Shadow rules (mode: shadow) try a rule on live traffic before enforcing
// it, as OPA-Envoy's dry-run, Istio's istio.io/dry-run and Envoy RBAC's
// shadow_rules do. A shadow rule keeps its place in the rule order:
//
//   - It is reached when the request matches it (hosts, paths, methods,
//     client_cidrs, context_extensions, match.when) and no enforced rule
//     before it matched. Its would-be decision is then computed in full:
//     authentication, require, when; everything but rate limits, whose
//     counters a rule that decides nothing must not spend.
//   - Matching then goes on past it, so the enforced decision is exactly
//     what it would be without the shadow rule. Shadow rules are decided
//     after the enforced decision, so that one whose authenticator is slow
//     (spending the request's deadline) cannot turn it into a 503. Turning a shadow rule into
//     an enforced one (deleting "mode: shadow") makes its would-be
//     decisions the real ones for the requests it was reached by.
//
// The would-be decisions are on Decision.Shadow, which the transports
// count (ext_authz_shadow_decisions_total by rule, would-be result and
// enforced result) and log.

// ShadowDecision is what a shadow rule would have decided.
type ShadowDecision struct {
	Rule   string
	Code   Code
	Reason string // as Decision.Reason: a word, never a credential or claim value
}

// markShadow marks the matcher of a shadow rule: the enforced match skips
// it (requestMatch.never) and shadowDecisions evaluates it.
func markShadow(m *matcher) {
	if m.extra == nil {
		m.extra = &requestMatch{}
	}
	m.extra.never = true
}

// addShadow records rule i, of matcher m, as a shadow rule.
func (p *Pipeline) addShadow(i int, m *matcher) (*requestMatch, *matcher) {
	p.shadows = append(p.shadows, int32(i))
	return m.extra, m
}

// shadowDecisions evaluates the shadow rules reached before the rule at
// position winner (-1: no rule matched, every shadow rule is reached).
func (p *Pipeline) shadowDecisions(ctx context.Context, r *Request, winner int, st *matchState, scan *headerScan) []ShadowDecision {
	var out []ShadowDecision
	for _, s := range p.shadows {
		if winner >= 0 && int(s) > winner {
			break
		}
		ru := p.rule(int(s))
		if !ru.shadow.matches(r.Host, r.Path, r.Method) {
			continue
		}
		la := lazyActivation{hops: st.hops}
		switch res, _, _ := ru.match.check(r, p.xffHops, &la); res {
		case matchOK:
			code, reason := p.wouldDecide(ctx, r, &ru, &la, scan)
			out = append(out, ShadowDecision{Rule: ru.name, Code: code, Reason: reason})
		case matchWhenError:
			out = append(out, ShadowDecision{Rule: ru.name, Code: Forbidden, Reason: ReasonConditionError})
		}
	}
	return out
}

// wouldDecide is what rule ru would decide if it were enforced, short of
// rate limits.
func (p *Pipeline) wouldDecide(ctx context.Context, r *Request, ru *rule, la *lazyActivation, scan *headerScan) (Code, string) {
	switch ru.action {
	case ActionDeny:
		return Forbidden, "denied_by_rule"
	case ActionAllow:
		if reason := la.requirements(r, ru, nil); reason != "" {
			return Forbidden, reason
		}
		return OK, ""
	}
	id, _, err := p.authenticate(ctx, r, ru, scan)
	if err != nil {
		if reason := tokens.Reason(err); reason != "" {
			return Unauthenticated, reason
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return Unavailable, "deadline_exceeded"
		}
		return Unavailable, "authenticator_unavailable"
	}
	if reason := ru.require.check(&id.Principal); reason != "" {
		return Forbidden, reason
	}
	if reason := la.requirements(r, ru, id); reason != "" {
		return Forbidden, reason
	}
	return OK, ""
}
