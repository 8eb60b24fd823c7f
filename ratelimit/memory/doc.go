// Package memory is the in-process ratelimit.Store: the default backend,
// right for one replica and for the quickstart. Counters live in a sharded
// map; Run sweeps expired counters.
//
// Import rules: memory imports only ratelimit.
package memory
