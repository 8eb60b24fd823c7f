// Package policytest runs policy test files (`ext-authz test FILE...`):
// requests with credential shortcuts and the decisions the policy must
// make for them, against a config built by the same compile serve runs.
//
//	test file ─▶ generation.Compile(config) ─▶ authz.Pipeline.Decide ─▶ compare
//
// Nothing outside the process is needed for the common configs: JWTs and
// UDB tickets are minted with the test file's signing keys, UDB sessions
// are served from an in-memory session store, and rate limits are built
// as descriptors and compared, never counted (no Redis). See
// docs/policy-testing.md.
package policytest
