package authz

// Policy is a policy config compiled once: validated, its defaults
// applied, its matchers, regexes, conditions and rate limits compiled. The
// service compiles it as it validates the config file (check-config,
// serve and reload share that step), then builds the pipeline from it
// once the authenticators exist, without compiling anything again.
type Policy struct {
	cfg   Config
	rules []compiledRule
}

// Compile validates cfg (after applying defaults) and compiles it.
// authenticators reports whether a name is a configured authenticator.
// Errors are field.path: message, relative to the policy.
func Compile(cfg Config, authenticators func(name string) bool) (*Policy, error) {
	cfg.ApplyDefaults()
	rules, err := cfg.validate(authenticators)
	if err != nil {
		return nil, err
	}
	return &Policy{cfg: cfg, rules: rules}, nil
}

// Config returns the policy's config, defaults applied.
func (pol *Policy) Config() *Config { return &pol.cfg }
