// Package telemetry builds the process's observability once, for the
// wiring to inject: the redacting *slog.Logger, the Prometheus registry
// (with the Go, process, build-info and config-reload series), the OTel
// tracer provider and propagators, and log attributes for joined errors.
//
// Place in the data flow: cmd/ext-authz builds a Telemetry from the
// config's telemetry section before anything else, and hands its parts to
// internal/generation (compiling a generation) and internal/server
// (serving). Nothing here knows a request or a decision: the decision log
// is internal/decisionlog, adapted to the pipeline in internal/server.
//
// Import rules: like every internal package below the domain, it imports
// neither authz, tokens, ratelimit nor cmd; it reads no environment (the
// version stamped into main is passed in).
package telemetry
