package authz

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens"
)

// Asserter mints the signed identity assertion an allowed, authenticated
// request carries upstream (tokens/assertion.Minter implements it). Mint
// must be safe for concurrent use and cheap for an identity it has seen:
// it is called on every such request. An error fails the request closed
// (503 assertion_unavailable): an upstream that requires the assertion
// would refuse the request anyway, and one that does not must not be
// taught to do without it.
type Asserter interface {
	Mint(p *tokens.Principal, authenticator, audience, decisionID string) (string, error)
}

// AssertionOptions attach a signed identity assertion to every allowed,
// authenticated request (see docs/upstream-assertion.md).
type AssertionOptions struct {
	// Header carries the assertion; required. A client-sent header of this
	// name, in any spelling, is always removed: on anonymous requests, on
	// rules that turn the assertion off, and where the assertion replaces
	// it.
	Header string
	// Audience is the aud of requests whose rule names none and whose host
	// is not in HostAudiences; required.
	Audience string
	// HostAudiences maps a host (as rules match it: CanonicalHost) to the
	// audience of its upstream.
	HostAudiences map[string]string
	// Asserter signs; required.
	Asserter Asserter
}

// AudienceOff is the rule's assertion_audience that sends no assertion on
// that rule (the header is still removed).
const AudienceOff = "-"

// assertionPlan is the compiled AssertionOptions.
type assertionPlan struct {
	header   string // lower case
	audience string
	hosts    map[string]string
	asserter Asserter
	// anonymous is the removal list of allowed anonymous requests with
	// no spelling to remove: the identity headers and the assertion
	// header (clipped, shared).
	anonymous []string
}

// ValidateAssertion checks opts (but for its Asserter) against the
// policy's identity headers (defaults applied); paths are relative to the
// upstream_assertion section.
func ValidateAssertion(opts AssertionOptions, identity IdentityHeaders) error {
	c := Config{IdentityHeaders: identity}
	c.ApplyDefaults() // idempotent: the default identity header names count too
	id := compileIdentity(c.IdentityHeaders)
	_, err := assertionPlanOf(&opts, &id)
	return err
}

// compileAssertion checks opts and returns its plan, nil without one. It
// adds the header's key to the identity headers' keys, so its other
// spellings are removed wherever theirs are.
func compileAssertion(opts *AssertionOptions, id *identityHeaders) (*assertionPlan, error) {
	if opts == nil {
		return nil, nil
	}
	if opts.Asserter == nil {
		return nil, errors.New("no asserter")
	}
	plan, err := assertionPlanOf(opts, id)
	if err != nil {
		return nil, err
	}
	id.keys[headerKey(plan.header)] = true
	plan.anonymous = slices.Clip(slices.Concat(id.all, []string{plan.header}))
	return plan, nil
}

func assertionPlanOf(opts *AssertionOptions, id *identityHeaders) (*assertionPlan, error) {
	var errs []error
	if !validHeaderName(opts.Header) || isProtectedHeader(opts.Header) {
		errs = append(errs, yamlfile.Errorf("header", "%q is not a header that can carry the assertion", opts.Header))
	} else if strings.Contains(opts.Header, "_") {
		errs = append(errs, yamlfile.Errorf("header", "%q: use '-' instead of '_' (many proxies drop names with underscores)", opts.Header))
	}
	if id.keys[headerKey(opts.Header)] {
		errs = append(errs, yamlfile.Errorf("header", "%q is also an identity header", opts.Header))
	}
	if err := validAudience(opts.Audience); err != nil || opts.Audience == AudienceOff {
		errs = append(errs, yamlfile.Errorf("audience", "required: the aud of assertions whose rule and host name none"))
	}
	plan := &assertionPlan{header: ASCIILower(opts.Header), audience: opts.Audience, asserter: opts.Asserter}
	for h, aud := range opts.HostAudiences {
		c, err := CanonicalHost(h)
		if err != nil || c != h {
			errs = append(errs, yamlfile.Errorf("audiences."+h, "%q is not a host as rules match it (lower case, no port)", h))
		}
		if err := validAudience(aud); err != nil {
			errs = append(errs, yamlfile.Wrap("audiences."+h, err))
		}
		if plan.hosts == nil {
			plan.hosts = map[string]string{}
		}
		plan.hosts[c] = aud
	}
	return plan, errors.Join(errs...)
}

// validAudience checks an audience (or AudienceOff).
func validAudience(aud string) error {
	if aud == AudienceOff {
		return nil
	}
	if !forwardable(aud) || len(aud) > 512 {
		return fmt.Errorf("%q is not an audience: a non-empty string without control characters or surrounding spaces", aud)
	}
	return nil
}

// audienceFor returns the audience of a request to host on a rule whose
// assertion_audience is ruleAud.
func (a *assertionPlan) audienceFor(ruleAud, host string) string {
	if ruleAud != "" {
		return ruleAud
	}
	if aud, ok := a.hosts[host]; ok {
		return aud
	}
	return a.audience
}

// finishAnonymous adds to an allowed anonymous decision, beyond the
// removals Decide computed (identity headers, their spellings, the
// override headers), the assertion header's removal and, with strip mode
// all, the removal of every credential the request carries at a
// configured source.
func (p *Pipeline) finishAnonymous(r *Request, scan *headerScan, d *Decision) {
	if p.assertion != nil {
		if len(d.RemoveHeaders) == len(p.identity.all) {
			d.RemoveHeaders = p.assertion.anonymous // nothing but the identity headers: the precomputed list
		} else {
			d.RemoveHeaders = slices.Concat(d.RemoveHeaders, []string{p.assertion.header})
		}
	}
	if p.strip.mode == StripCredentialsAll {
		p.strip.anonymous(r, scan, d)
	}
}

// finishAuthenticated adds what an allowed, authenticated decision carries
// beyond the identity headers: the removal of credentials the rule
// configures but did not verify (strip_credentials), and the assertion.
// It returns a reason when the request must be refused instead.
func (p *Pipeline) finishAuthenticated(r *Request, ru *rule, winner *Authenticator, id *Identity, scan *headerScan, d *Decision) string {
	if p.strip.mode != StripCredentialsVerified && len(ru.authn) > 1 {
		p.strip.unverified(r, scan, ru.authn, winner, d)
	}
	a := p.assertion
	if a == nil {
		return ""
	}
	aud := a.audienceFor(ru.audience, r.Host)
	if aud == AudienceOff {
		d.RemoveHeaders = slices.Concat(d.RemoveHeaders, []string{a.header})
		return ""
	}
	tok, err := a.asserter.Mint(&id.Principal, id.Authenticator, aud, d.ID)
	if err != nil {
		return "assertion_unavailable"
	}
	// Set replaces the client's header of the exact name; its other
	// spellings are among the identity removals (compileAssertion).
	d.UpstreamHeaders = append(slices.Clip(d.UpstreamHeaders), Header{Name: a.header, Value: tok})
	return ""
}

// validateAssertionAudience checks the rule's assertion_audience.
func (r *RuleConfig) validateAssertionAudience() error {
	switch {
	case r.AssertionAudience == "":
		return nil
	case r.Action != ActionAuthenticate:
		return yamlfile.Errorf("assertion_audience", "only an authenticate rule sends an assertion")
	}
	return yamlfile.Wrap("assertion_audience", validAudience(r.AssertionAudience))
}

// candidateAsserter stands in for the asserter in a candidate policy
// (NewCandidate): the candidate's decisions are never answered, so it
// signs nothing, and Compare ignores the assertion's value (sameUpstream).
type candidateAsserter struct{}

func (candidateAsserter) Mint(*tokens.Principal, string, string, string) (string, error) {
	return "candidate", nil
}

// forCandidate returns o for a candidate pipeline: the same header and
// audiences, no signatures.
func (o *AssertionOptions) forCandidate() *AssertionOptions {
	if o == nil {
		return nil
	}
	c := *o
	c.Asserter = candidateAsserter{}
	return &c
}

// sameUpstream reports whether two decisions set the same upstream
// headers, the assertion's value aside: a signature differs each time it
// is made (and the candidate makes none). Whether both carry one is
// compared; a different audience is not seen.
func (p *Pipeline) sameUpstream(a, b []Header) bool {
	if p.assertion == nil {
		return slices.Equal(a, b)
	}
	return slices.EqualFunc(a, b, func(x, y Header) bool {
		return x.Name == y.Name && (x.Value == y.Value || x.Name == p.assertion.header)
	})
}
