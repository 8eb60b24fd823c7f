// Package admission bounds the work a server takes on: at most MaxInFlight
// calls are decided at once; up to MaxQueued more wait for a turn, each no
// longer than MaxQueueWait or its own deadline; the rest are refused at
// once.
//
// Without it, a burst larger than the CPU can serve (or a dependency that
// slows every call) piles up goroutines and decoded requests until callers
// time out, and the server goes on deciding for callers that left long
// ago. With it, memory held by calls is bounded by (MaxInFlight +
// MaxQueued) × the request size, and a refused caller learns at once that
// it should try another replica.
//
// The package is transport-neutral: Acquire returns ErrOverloaded or
// ErrCallerGone, and each transport maps them to its own answer (the gRPC
// server in internal/server answers RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED or
// CANCELLED). Its metrics are ext_authz_overload_rejected_total{reason},
// ext_authz_overload_late_total and ext_authz_overload_queued.
package admission
