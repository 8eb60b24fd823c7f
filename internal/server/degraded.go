package server

// Degraded lists what the service does in a degraded mode while still
// ready (for /readyz detail): a revocation list that cannot vouch for its
// memory asks Redis on every Check, and answers 503 when Redis cannot.
// Degraded is not not-ready: every replica would be degraded alike when
// Redis fails, and taking them all out of the gateway would deny every
// request, including those whose Checks still decide.
func (s *Server) Degraded() []string {
	g := s.gen.Load()
	if g == nil {
		return nil
	}
	return g.Degraded()
}
