# The OPA-Envoy peer's policy (loadtest/throughput.sh, measurement jwt with
# PEERS=1): the same decision as loadtest/config/memory.yaml's "api" rule.
# Host example.com, path under /api/, and a bearer JWT verified against the
# quickstart's JWKS (the same RS256 key the harness mints the pool with),
# issuer and audience as configured there; io.jwt.decode_verify also checks
# exp and nbf. The JWKS itself is data.loadtest.jwks, written by the script
# from examples/quickstart/keys/jwks.json.
package envoy.authz

import rego.v1

default allow := false

allow if {
	input.attributes.request.http.host == "example.com"
	startswith(input.attributes.request.http.path, "/api/")
	[valid, _, _] := io.jwt.decode_verify(bearer, {
		"cert": data.loadtest.jwks,
		"iss": "https://issuer.quickstart.example",
		"aud": "quickstart",
	})
	valid
}

bearer := t if {
	h := input.attributes.request.http.headers.authorization
	startswith(h, "Bearer ")
	t := substring(h, 7, -1)
}
