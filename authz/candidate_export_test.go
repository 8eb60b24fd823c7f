package authz

// WithoutTwins makes Compare decide every request under the candidate,
// for the differential test of the twin-rule shortcut.
func (c *Candidate) WithoutTwins() *Candidate {
	cc := *c
	cc.twins = nil
	return &cc
}
