package authz

// lazyActivation builds the activation of conditions the first time a
// condition needs it: a request that reaches no condition allocates
// nothing for them.
//
// It holds no pointer to the request (get copies it): the activation
// escapes into CEL, and a request reachable from it would be moved to the
// heap on every Decide, conditions or not.
type lazyActivation struct {
	id   *Identity
	hops int
	a    *condActivation
}

func (l *lazyActivation) get(r *Request) *condActivation {
	if l.a == nil {
		l.a = &condActivation{req: *r, id: l.id, hops: l.hops}
	} else if l.a.id != l.id {
		l.a.id, l.a.claims, l.a.scopes = l.id, claimMap{}, nil
		l.a.sized &^= bigClaims | bigScopes
		l.a.big &^= bigClaims | bigScopes
		l.a.built &^= bigClaims
	}
	return l.a
}

// requirements evaluates the rule's when requirements for identity id
// (nil for an anonymous rule) and returns "" when all hold, else the
// reason to deny.
func (l *lazyActivation) requirements(r *Request, ru *rule, id *Identity) string {
	if len(ru.when) == 0 {
		return ""
	}
	l.id = id
	a := l.get(r)
	for _, c := range ru.when {
		switch res, _ := c.eval(a); res {
		case condTrue:
		case condFalse:
			return ReasonConditionFailed
		case condCost:
			return ReasonConditionCost
		default:
			return ReasonConditionError
		}
	}
	return ""
}

// ReasonConditionCost is the reason of a denial by a condition that ran
// out of its cost limit (ConditionCostLimit) while being evaluated.
const ReasonConditionCost = "condition_cost_exceeded"

// matchState is what matching one request keeps between the rule index's
// calls to Pipeline.accept: the activation, each rule's result (the index
// asks again for each reading of the path and override method), and the
// first rule whose match.when could not be evaluated.
type matchState struct {
	lazyActivation
	errPos  int // -1: none
	errCond int
	err     error
	memo    [8]struct {
		pos int32
		ok  bool
	}
	n int
}

// accept reports whether rule i's requestMatch holds for the request; the
// index calls it only for rules that have one.
func (p *Pipeline) accept(i int, r *Request, st *matchState) bool {
	e := p.rules[i]
	m := p.extras[e.extra].match
	if m.never {
		return false // a shadow rule never decides (shadow.go)
	}
	for _, x := range st.memo[:st.n] {
		if int(x.pos) == i {
			return x.ok
		}
	}
	out, ci, err := m.check(r, st.hops, &st.lazyActivation)
	ok := out == matchOK
	if out == matchWhenError && (st.errPos < 0 || i < st.errPos) {
		st.errPos, st.errCond, st.err = i, ci, err
	}
	if st.n < len(st.memo) {
		st.memo[st.n].pos, st.memo[st.n].ok = int32(i), ok
		st.n++
	}
	return ok
}
