package authz

import (
	"context"
	"reflect"
	"slices"
	"sync"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/tokens"
)

// Candidate is a live policy with a candidate policy beside it: Compare
// decides a request under both, enforcing only the live decision. The two
// pipelines share the authenticators; the candidate's work that is not
// pure computation is never done twice:
//
//   - a credential the live pipeline already verified (or rejected) with an
//     authenticator is not verified again when the candidate's rule uses
//     the same authenticator: the candidate gets the live outcome;
//   - the candidate's rate limits are built as descriptors and compared
//     with the live ones, never sent to the limiter: it counts nothing,
//     and a candidate decision is never rate_limited.
//
// Requests not compared (see Live) cost nothing more than the live policy.
type Candidate struct {
	live, cand *Pipeline
	// twins maps a live rule's name to the position of the candidate rule
	// identical to it but for the name, when the two policies' settings
	// (everything but the rules) are identical too: when the candidate
	// picks that rule for a request, its decision is the live one by
	// construction, and Compare skips deciding it again.
	twins map[string]int
}

// NewCandidate compiles the candidate policy beside live, over live's
// authenticators, with the options live was built with. The returned
// Candidate's Live is live made to record for Compare; live itself is
// unchanged. Errors are the candidate config's (see NewPipeline).
func NewCandidate(live *Pipeline, liveCfg, candidate Config, opts Options) (*Candidate, error) {
	lp := *live
	lp.authenticators = make(map[string]*Authenticator, len(live.authenticators))
	candAuthn := make([]*Authenticator, 0, len(live.authenticators))
	for name, a := range live.authenticators {
		l, c := *a, *a
		l.Verifier = memoVerifier{name: name, v: a.Verifier}
		c.Verifier = memoVerifier{name: name, v: a.Verifier, cand: true}
		lp.authenticators[name] = &l
		candAuthn = append(candAuthn, &c)
	}
	lp.extras = slices.Clone(live.extras)
	for i := range lp.extras {
		authn := make([]*Authenticator, len(lp.extras[i].authn))
		for j, a := range lp.extras[i].authn {
			authn[j] = lp.authenticators[a.Name]
		}
		lp.extras[i].authn = authn
	}
	if live.limiter != nil {
		lp.limiter = recordingLimiter{live.limiter}
	}
	copts := opts
	copts.Limiter = recordingLimiter{}
	copts.Tracer = nil                        // one request, one trace: the live one
	copts.NewID = func() string { return "" } // the candidate's decision is never answered
	cp, err := NewPipeline(candidate, candAuthn, copts)
	if err != nil {
		return nil, err
	}
	if live.limiter == nil && cp.hasRateLimits() {
		// Live has no limiter, so the candidate's limits could never
		// apply either.
		return nil, yamlfile.Errorf("rules", "rules have rate_limits but no rate limiter is configured (rate_limit.files)")
	}
	return &Candidate{live: &lp, cand: cp, twins: twinRules(liveCfg, candidate)}, nil
}

// twinRules finds the candidate's rules identical to live ones (see
// Candidate.twins); nil when the policies' settings differ.
func twinRules(live, cand Config) map[string]int {
	live.ApplyDefaults()
	cand.ApplyDefaults()
	lr, cr := live.Rules, cand.Rules
	live.Rules, cand.Rules = nil, nil
	if !reflect.DeepEqual(live, cand) {
		return nil
	}
	twins := map[string]int{}
	for i := range lr {
		l := lr[i]
		l.Name = ""
		for j := range cr {
			c := cr[j]
			c.Name = ""
			if reflect.DeepEqual(l, c) {
				twins[lr[i].Name] = j
				break
			}
		}
	}
	return twins
}

// hasRateLimits reports whether any rule has rate limits.
func (p *Pipeline) hasRateLimits() bool {
	for _, r := range p.extras {
		if r.limits != nil {
			return true
		}
	}
	return false
}

// Live is the live pipeline alone, for requests not compared: its
// authenticators and limiter only record when Compare asks them to.
func (c *Candidate) Live() *Pipeline { return c.live }

// Comparison is the candidate's side of one compared request.
type Comparison struct {
	// Candidate is what the candidate policy decided (never rate_limited:
	// its limits are not counted).
	Candidate Decision
	// LiveLimits and CandidateLimits are the rate-limit requests each
	// policy built (the live one was sent to the limiter, the candidate's
	// was not); Domain is empty when the rule had none.
	LiveLimits, CandidateLimits ratelimit.Request
	// Differs names what differs: "result", "reason", "rule_headers"
	// (identity headers set or removed upstream) or "rate_limits"; empty
	// when they agree. Rule names are not compared: a candidate may rename
	// rules.
	Differs []string
	// Skipped is set when ctx ended before the candidate could decide: a
	// candidate decided on an ended context would disagree for nothing.
	Skipped bool
}

// Agree reports whether the two policies decided alike.
func (c *Comparison) Agree() bool { return len(c.Differs) == 0 }

// Compare decides r under the live policy (the decision to enforce) and
// under the candidate.
func (c *Candidate) Compare(ctx context.Context, r *Request) (Decision, Comparison) {
	orig := *r // Decide canonicalises r in place; the candidate starts from the same request
	m := memoPool.Get().(*memo)
	defer m.release()
	ctx = context.WithValue(ctx, memoKey{}, m)
	d := c.live.Decide(ctx, r)
	if ctx.Err() != nil {
		return d, Comparison{Skipped: true}
	}
	if ru, ok := c.twins[d.Rule]; ok && d.Rule != "" && c.candidatePicks(r, ru) {
		// The candidate's rule for r is the live rule's twin: the same
		// decision, descriptors and headers (a live rate limit aside,
		// which the candidate would not have counted).
		cd := d
		cd.ID, cd.Rule = "", c.cand.rule(ru).name
		if cd.Code == RateLimited || (cd.Code == Unavailable && cd.Reason == "rate_limit_unavailable") {
			cd.Code, cd.Reason, cd.ResponseHeaders = OK, "", nil
		}
		return d, Comparison{Candidate: cd, LiveLimits: m.limits[0], CandidateLimits: m.limits[0]}
	}
	cr := orig
	m.candidate = true
	cmp := Comparison{Candidate: c.cand.Decide(ctx, &cr), LiveLimits: m.limits[0], CandidateLimits: m.limits[1]}
	cmp.Differs = differs(&d, &cmp)
	return d, cmp
}

// candidatePicks reports whether the candidate's first match for r (as
// the live pipeline left it: canonical, and the candidate canonicalises
// alike, its settings being the live ones) is rule i.
func (c *Candidate) candidatePicks(r *Request, i int) bool {
	scan := requestScan(r)
	methods, _, reason := c.cand.overrides(r, &scan)
	if reason != "" {
		return false
	}
	st := matchState{lazyActivation: lazyActivation{hops: c.cand.xffHops}, errPos: -1}
	got, reason := c.cand.match(r, methods, &st)
	// A match.when that could not be evaluated before the rule decides
	// differently from the live twin (a denial): not a twin's answer.
	return reason == "" && got == i && (st.errPos < 0 || st.errPos > i)
}

// differs compares a live decision with the candidate's. A live decision
// denied by its rate limits, or by the limiter's failure, counts as the
// allow it would otherwise have been: the candidate's limits are not
// counted, so only their descriptors can be compared.
func differs(d *Decision, cmp *Comparison) []string {
	cd := &cmp.Candidate
	code, reason := d.Code, d.Reason
	if code == RateLimited || (code == Unavailable && reason == "rate_limit_unavailable") {
		code, reason = OK, ""
	}
	var out []string
	if code != cd.Code {
		out = append(out, "result")
	}
	if reason != cd.Reason {
		out = append(out, "reason")
	}
	if code == OK && cd.Code == OK {
		// A rate-limited live decision has no upstream headers left to
		// compare.
		if d.Code == OK && (!slices.Equal(d.UpstreamHeaders, cd.UpstreamHeaders) || !slices.Equal(d.RemoveHeaders, cd.RemoveHeaders)) {
			out = append(out, "rule_headers")
		}
		if !sameLimits(&cmp.LiveLimits, &cmp.CandidateLimits) {
			out = append(out, "rate_limits")
		}
	}
	return out
}

func sameLimits(a, b *ratelimit.Request) bool {
	return a.Domain == b.Domain && slices.EqualFunc(a.Descriptors, b.Descriptors, func(x, y ratelimit.Descriptor) bool {
		return slices.Equal(x.Entries, y.Entries)
	})
}

// memo is one compared request's record of what the live pipeline did:
// the authenticators' outcomes, to answer the candidate's with, and each
// side's rate-limit request.
type memo struct {
	candidate bool // the candidate is deciding now
	verified  []verified
	limits    [2]ratelimit.Request // live, candidate
}

type verified struct {
	name, credential string
	principal        tokens.Principal
	err              error
}

// memoPool keeps memos (and their verified slices) between requests.
var memoPool = sync.Pool{New: func() any { return &memo{verified: make([]verified, 0, 2)} }}

// release clears m (it holds principals and credentials) and pools it.
func (m *memo) release() {
	clear(m.verified)
	*m = memo{verified: m.verified[:0]}
	memoPool.Put(m)
}

type memoKey struct{}

func memoFrom(ctx context.Context) *memo {
	m, _ := ctx.Value(memoKey{}).(*memo)
	return m
}

// memoVerifier is an authenticator's verifier in a Candidate: while the
// live pipeline decides a compared request it records each outcome, and
// the candidate's verification of the same credential by the same
// authenticator gets that outcome instead of a second verification (a
// second session lookup, introspection call or signature check).
type memoVerifier struct {
	name string
	v    Verifier
	cand bool
}

func (mv memoVerifier) Verify(ctx context.Context, credential string) (tokens.Principal, error) {
	m := memoFrom(ctx)
	if m == nil {
		return mv.v.Verify(ctx, credential)
	}
	if mv.cand {
		for i := range m.verified {
			if v := &m.verified[i]; v.name == mv.name && v.credential == credential {
				return v.principal, v.err
			}
		}
		return mv.v.Verify(ctx, credential)
	}
	p, err := mv.v.Verify(ctx, credential)
	m.verified = append(m.verified, verified{name: mv.name, credential: credential, principal: p, err: err})
	return p, err
}

// Ready passes the verifier's readiness through (see Generation.Ready).
func (mv memoVerifier) Ready() error {
	if r, ok := mv.v.(interface{ Ready() error }); ok {
		return r.Ready()
	}
	return nil
}

// recordingLimiter records the rate-limit request of a compared request's
// side. The live one passes it to the limiter; the candidate's (limiter
// nil) answers OK without counting anything.
type recordingLimiter struct{ l Limiter }

func (rl recordingLimiter) Check(ctx context.Context, req ratelimit.Request) (ratelimit.Result, error) {
	if m := memoFrom(ctx); m != nil {
		side := 0
		if m.candidate {
			side = 1
		}
		m.limits[side] = req
	}
	if rl.l == nil {
		return ratelimit.Result{Code: ratelimit.OK}, nil
	}
	return rl.l.Check(ctx, req)
}
