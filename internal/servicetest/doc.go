// Package servicetest runs a real ext-authz for tests: the binary built
// once per test process and started as `ext-authz serve`, its log lines
// read as they come, its /metrics scraped; and the fixtures the service's
// end-to-end tests share (dev API keys, a base config, quickstart tokens).
//
// It is imported only by tests (cmd/ext-authz, internal/server,
// internal/generation). It sits above the domain packages (it mints tokens
// with tokens) and below everything that serves.
package servicetest
