// Package assertion signs the identity assertion the service attaches to
// allowed requests: a short-lived JWT (ES256 or EdDSA) that tells an
// upstream who the caller is, for which audience, and which authenticator
// vouched, so the upstream (or its sidecar, with an Istio
// RequestAuthentication) verifies a signature instead of trusting plain
// x-auth-* headers.
//
// A KeyRing holds the signing key and the keys published beside it (the
// next key, published before it signs, and retired keys, published until
// their last assertion expires); JWKS renders them for the admin port's
// /.well-known/jwks.json. A Minter signs assertions and caches them per
// identity and audience, so a request served from a verifier's cache pays
// no signature.
//
// The package is a domain core like tokens: standard library crypto, no
// pipeline, no transport.
package assertion
