package generation

import (
	"errors"
	"os"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// CandidateConfig is policy_candidate: a whole policy, in a file of its
// own, decided beside the live one on a sample of requests and never
// enforced (docs/policy-rollout.md).
type CandidateConfig struct {
	// File holds a policy: section with the live policy's schema, over
	// the same authenticators. Watched and reloaded like the other files
	// the config references. Empty: no candidate.
	File string `yaml:"file"`
	// SamplePercent is the share of requests (0 to 100) also decided by
	// the candidate. Default 100.
	SamplePercent *float64 `yaml:"sample_percent"`
}

// candidateFile is what a candidate file holds.
type candidateFile struct {
	Policy authz.Config `yaml:"policy"`
}

// Candidate is a generation's compiled candidate policy.
type Candidate struct {
	*authz.Candidate
	// File is the candidate file's name, SamplePercent its share of
	// requests (0 to 100).
	File          string
	SamplePercent float64
}

// compileCandidate compiles policy_candidate beside live (nil when there
// is none). Its errors stand at policy_candidate.file and carry the
// candidate file's own lines:
//
//	config.yaml:40: policy_candidate.file: candidate.yaml:7: policy.rules[0].action: ...
func compileCandidate(c *Config, live *authz.Pipeline, opts authz.Options) (*Candidate, error) {
	cc := &c.PolicyCandidate
	if cc.File == "" {
		if cc.SamplePercent != nil {
			return nil, yamlfile.Errorf("policy_candidate.file", "required with sample_percent")
		}
		return nil, nil
	}
	pct := 100.0
	if cc.SamplePercent != nil {
		pct = *cc.SamplePercent
		if !(pct >= 0 && pct <= 100) { // NaN too
			return nil, yamlfile.Errorf("policy_candidate.sample_percent", "%v: must be 0 to 100", pct)
		}
	}
	data, err := os.ReadFile(cc.File)
	if err != nil {
		return nil, yamlfile.Errorf("policy_candidate.file", "%v", err)
	}
	var cf candidateFile
	// ${NAME} is not expanded in a candidate: a policy has no secrets, and
	// a reference is refused rather than read as empty.
	f, err := yamlfile.Decode(cc.File, data, &cf, func(string) string { return "" })
	if err != nil {
		return nil, candidateErrors(err)
	}
	cf.Policy.ApplyDefaults()
	cand, err := authz.NewCandidate(live, c.Policy, cf.Policy, opts)
	if err != nil {
		return nil, candidateErrors(f.Annotate(yamlfile.Wrap("policy", err)))
	}
	return &Candidate{Candidate: cand, File: cc.File, SamplePercent: pct}, nil
}

// candidateErrors places each of the candidate file's errors (already
// "candidate.yaml:7: ...") at policy_candidate.file.
func candidateErrors(err error) error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]error, len(list))
	for i, e := range list {
		out[i] = yamlfile.Errorf("policy_candidate.file", "%v", e)
	}
	return errors.Join(out...)
}
