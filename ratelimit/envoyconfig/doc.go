// Package envoyconfig loads envoyproxy/ratelimit config files with that
// project's own src/config package, so a file valid there is valid here
// with the same meaning (domains, nested descriptors, keys with and without
// values, wildcards, units, unlimited, shadow_mode, replaces,
// detailed_metric, share_threshold). Descriptors are matched on a tree
// compiled from the same files (compiled.go) that repeats that project's
// GetLimit lookup without its allocations; a differential test and a fuzz
// target hold the two equal.
//
// It is the one package under ratelimit that uses envoyproxy/ratelimit;
// everything it returns is a plain ratelimit.Limit.
//
// envoyproxy/ratelimit reports a bad file by panicking. Load recovers every
// panic into an ordinary error that names the file, and the field and line
// where it can find them, so a bad file at reload is an error, never a
// crash.
package envoyconfig
