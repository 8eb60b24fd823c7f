package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// QuotaConfig takes a descriptor's limit straight from a numeric claim of
// the caller's identity (a JWT claim, a session or ticket field, an API
// key attribute), bounded by Max, so a user database can grant one
// customer a custom quota without a config change.
type QuotaConfig struct {
	// Claim holds the number of requests per Unit.
	Claim string `yaml:"claim"`
	// Unit is the window: second, minute, hour, day, week, month, year.
	Unit string `yaml:"unit"`
	// Max bounds the claim; required.
	Max uint32 `yaml:"max"`
}

// ParseRate parses a rate: "<requests>/<unit>" ("10/second", "10000/day")
// or "unlimited". requests is a decimal number up to 4294967295 without
// sign or leading zeros; unit a Unit name.
func ParseRate(s string) (Limit, error) {
	if s == "unlimited" {
		return Limit{Unlimited: true}, nil
	}
	n, u, ok := strings.Cut(s, "/")
	if !ok {
		return Limit{}, fmt.Errorf("%q is not a rate: want <requests>/<unit> (10/second) or unlimited", s)
	}
	if n == "" || (len(n) > 1 && n[0] == '0') || strings.TrimLeft(n, "0123456789") != "" {
		return Limit{}, fmt.Errorf("%q: requests must be a whole number", s)
	}
	req, err := strconv.ParseUint(n, 10, 32)
	if err != nil {
		return Limit{}, fmt.Errorf("%q: requests must be at most %d", s, uint32(math.MaxUint32))
	}
	unit, ok := ParseUnit(u)
	if !ok || u != strings.ToLower(u) {
		return Limit{}, fmt.Errorf("%q: unit must be one of second, minute, hour, day, week, month, year", s)
	}
	return Limit{Requests: uint32(req), Unit: unit}, nil
}

// FormatRate is the inverse of ParseRate.
func FormatRate(l *Limit) string {
	if l.Unlimited {
		return "unlimited"
	}
	return strconv.FormatUint(uint64(l.Requests), 10) + "/" + l.Unit.String()
}

// Plans are the compiled plans of a Config: per plan, per descriptor
// name, the limits (windows) a rule's descriptor with that plan name gets.
// They are immutable and safe for concurrent use.
type Plans struct {
	claim  string
	def    string
	plans  map[string]map[string][]*Limit
	quotas map[string]quota
	names  []string
}

type quota struct {
	claim string
	unit  Unit
	max   uint32
}

// CompilePlans validates and compiles the plans and quotas of c; it
// returns nil, nil when there are none. Paths in errors are relative to
// the section. It is their only validator.
func (c *Config) CompilePlans() (*Plans, error) {
	if len(c.Plans) == 0 && len(c.Quotas) == 0 {
		var errs []error
		if c.DefaultPlan != "" {
			errs = append(errs, yamlfile.Errorf("default_plan", "%q: no plans are defined", c.DefaultPlan))
		}
		if c.PlanClaim != "" {
			errs = append(errs, yamlfile.Errorf("plan_claim", "no plans are defined"))
		}
		return nil, errors.Join(errs...)
	}
	p := &Plans{claim: c.PlanClaim, def: c.DefaultPlan, plans: map[string]map[string][]*Limit{}, quotas: map[string]quota{}}
	var errs []error
	names := map[string]bool{}
	for _, plan := range sortedKeys(c.Plans) {
		path := "plans." + plan
		if plan == "" {
			errs = append(errs, yamlfile.Errorf("plans", "empty plan name"))
			continue
		}
		byName := map[string][]*Limit{}
		for _, name := range sortedKeys(c.Plans[plan]) {
			np := path + "." + name
			rates := c.Plans[plan][name]
			if name == "" {
				errs = append(errs, yamlfile.Errorf(path, "empty descriptor name"))
				continue
			}
			if len(rates) == 0 {
				errs = append(errs, yamlfile.Errorf(np, "at least one rate is required (10/second, or unlimited)"))
			}
			var lims []*Limit
			units := map[Unit]int{}
			for i, r := range rates {
				l, err := ParseRate(r)
				if err != nil {
					errs = append(errs, yamlfile.Errorf(yamlfile.Index(np, i), "%v", err))
					continue
				}
				if j, dup := units[l.Unit]; dup && !l.Unlimited {
					errs = append(errs, yamlfile.Errorf(yamlfile.Index(np, i), "a second limit per %s (also [%d]): one limit per unit", l.Unit, j))
				}
				units[l.Unit] = i
				l.Plan = plan
				l.Policy = plan + "/" + name + "/" + l.Unit.String()
				if l.Unlimited {
					l.Policy = plan + "/" + name
				}
				lims = append(lims, &l)
			}
			byName[name] = lims
			names[name] = true
		}
		p.plans[plan] = byName
	}
	for _, name := range sortedKeys(c.Quotas) {
		q := c.Quotas[name]
		qp := "quotas." + name
		if name == "" {
			errs = append(errs, yamlfile.Errorf("quotas", "empty descriptor name"))
			continue
		}
		unit, ok := ParseUnit(q.Unit)
		if !ok {
			errs = append(errs, yamlfile.Errorf(qp+".unit", "%q is not one of second, minute, hour, day, week, month, year", q.Unit))
		}
		if q.Claim == "" {
			errs = append(errs, yamlfile.Errorf(qp+".claim", "required"))
		}
		if q.Max == 0 {
			errs = append(errs, yamlfile.Errorf(qp+".max", "required: the largest quota a claim may grant"))
		}
		p.quotas[name] = quota{claim: q.Claim, unit: unit, max: q.Max}
		names[name] = true
	}
	switch {
	case len(c.Plans) == 0 && c.DefaultPlan != "":
		errs = append(errs, yamlfile.Errorf("default_plan", "%q: no plans are defined", c.DefaultPlan))
	case len(c.Plans) == 0:
	case c.DefaultPlan == "":
		errs = append(errs, yamlfile.Errorf("default_plan", "required with plans: the plan of callers without one (and of anonymous ones)"))
	case c.Plans[c.DefaultPlan] == nil:
		errs = append(errs, yamlfile.Errorf("default_plan", "%q is not one of the plans (%s)", c.DefaultPlan, strings.Join(sortedKeys(c.Plans), ", ")))
	default:
		// The default plan stands in for every plan that does not name a
		// descriptor, so it must name them all.
		def := c.Plans[c.DefaultPlan]
		for _, plan := range sortedKeys(c.Plans) {
			for _, name := range sortedKeys(c.Plans[plan]) {
				if _, ok := def[name]; !ok {
					errs = append(errs, yamlfile.Errorf("plans."+c.DefaultPlan, "lacks %s, which plans.%s defines: the default plan is every other plan's fallback", name, plan))
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.names = sortedKeys(names)
	return p, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Has reports whether name is a descriptor name of a plan or a quota.
func (p *Plans) Has(name string) bool {
	_, ok := slices.BinarySearch(p.names, name)
	return ok
}

// Names are the descriptor names of the plans and quotas, sorted.
func (p *Plans) Names() []string { return slices.Clone(p.names) }

// Claim is the claim that names a caller's plan ("" when every caller has
// the default plan).
func (p *Plans) Claim() string { return p.claim }

// Resolve returns the plan of a caller whose identity has claims: the
// plan the plan claim names when it is a string naming a plan, else the
// default plan. An unknown plan name gets the default plan rather than an
// error: a token minted for a plan this config does not (yet) have still
// gets limits.
func (p *Plans) Resolve(claims map[string]any) string {
	if p.claim != "" {
		if s, ok := claims[p.claim].(string); ok {
			if _, known := p.plans[s]; known {
				return s
			}
		}
	}
	return p.def
}

// Limits returns the limits of descriptor name for a caller on plan with
// claims (nil claims for anonymous callers): the plan's (or, when the plan
// does not name it, the default plan's), with the window of the quota's
// unit replaced by the quota from the claims when the quota's claim is
// present. A quota claim that is not a whole number from 0 to 2^32-1
// yields 0 (every hit denied): a broken grant fails closed. It returns
// nil when nothing applies (the caller then uses the rate-limit files).
func (p *Plans) Limits(plan, name string, claims map[string]any) []*Limit {
	lims, ok := p.plans[plan][name]
	if !ok {
		lims = p.plans[p.def][name]
	}
	q, ok := p.quotas[name]
	if !ok {
		return lims
	}
	v, present := claims[q.claim]
	if !present {
		return lims
	}
	n, _ := quotaValue(v)
	ql := &Limit{Requests: min(n, q.max), Unit: q.unit, Plan: plan, Policy: "quota/" + name + "/" + q.unit.String()}
	out := make([]*Limit, 0, len(lims)+1)
	for _, l := range lims {
		if l.Unlimited || l.Unit != q.unit {
			out = append(out, l)
		}
	}
	return append(out, ql)
}

// quotaValue reads a whole number from a claim as the verifiers decode
// them: float64 (JSON), int and uint64 (YAML), string (session fields).
func quotaValue(v any) (uint32, bool) {
	switch x := v.(type) {
	case float64:
		if x >= 0 && x <= math.MaxUint32 && x == math.Trunc(x) {
			return uint32(x), true
		}
	case int:
		if x >= 0 && uint64(x) <= math.MaxUint32 {
			return uint32(x), true
		}
	case int64:
		if x >= 0 && x <= math.MaxUint32 {
			return uint32(x), true
		}
	case uint64:
		if x <= math.MaxUint32 {
			return uint32(x), true
		}
	case string:
		if n, err := strconv.ParseUint(x, 10, 32); err == nil && (x == "0" || x[0] != '0') {
			return uint32(n), true
		}
	}
	return 0, false
}
