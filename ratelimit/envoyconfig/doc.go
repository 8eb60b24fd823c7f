// Package envoyconfig loads envoyproxy/ratelimit config files with that
// project's own src/config package and matches descriptors with its
// GetLimit, so a file valid there is valid here with the same meaning
// (domains, nested descriptors, keys with and without values, wildcards,
// units, unlimited, shadow_mode, replaces, detailed_metric,
// share_threshold).
//
// It is the one package under ratelimit that speaks Envoy's descriptor
// proto (GetLimit takes one); everything it returns is a plain
// ratelimit.Limit.
//
// envoyproxy/ratelimit reports a bad file by panicking. Load recovers every
// panic into an ordinary error that names the file, and the field and line
// where it can find them, so a bad file at reload is an error, never a
// crash.
package envoyconfig
