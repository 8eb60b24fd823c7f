package authz

import (
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
)

// resolvePlan sets id.Plan from its claims when plans are configured.
func (p *Pipeline) resolvePlan(id *Identity) {
	if p.plans != nil && id != nil {
		id.Plan = p.plans.Resolve(id.Claims)
	}
}

// planLimits are the limits of plan descriptor name for the caller id
// (nil: anonymous, who has the default plan and no quota).
func planLimits(plans *ratelimit.Plans, id *Identity, name string) []*ratelimit.Limit {
	if id == nil {
		return plans.Limits(plans.Resolve(nil), name, nil)
	}
	plan := id.Plan
	if plan == "" {
		plan = plans.Resolve(id.Claims)
	}
	return plans.Limits(plan, name, id.Claims)
}

// checkPlanNames refuses descriptors naming a plan descriptor that the
// rate-limit plans do not define.
func checkPlanNames(ruleIndex int, rl *rateLimits, plans *ratelimit.Plans) error {
	if rl == nil {
		return nil
	}
	for j, name := range rl.plans {
		if name == "" {
			continue
		}
		path := yamlfile.Index(yamlfile.Index("rules", ruleIndex)+".rate_limits.descriptors", j) + ".plan"
		switch {
		case plans == nil:
			return yamlfile.Errorf(path, "%q: no rate-limit plans or quotas are configured (rate_limit.plans)", name)
		case !plans.Has(name):
			return yamlfile.Errorf(path, "%q is not a descriptor of rate_limit.plans or rate_limit.quotas (%v)", name, plans.Names())
		}
	}
	return nil
}
