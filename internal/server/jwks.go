package server

import (
	"net/http"
	"strconv"
)

// JWKSPath is where the admin port publishes the upstream assertion's
// keys (upstream_assertion; see docs/upstream-assertion.md).
const JWKSPath = "/.well-known/jwks.json"

// jwksMaxAge is the Cache-Control max-age of the JWKS: short beside the
// rotation period (at least 1m, 24h by default), so a verifier that
// honours it learns the next key long before it signs.
const jwksMaxAge = 60

// serveJWKS answers the serving generation's published assertion keys, or
// 404 when no upstream_assertion is configured.
func (s *Server) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	g := s.gen.Load()
	if g == nil || g.Assertion == nil {
		http.Error(w, "no upstream_assertion is configured", http.StatusNotFound)
		return
	}
	body := g.Assertion.Ring().JWKS()
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(jwksMaxAge))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}
