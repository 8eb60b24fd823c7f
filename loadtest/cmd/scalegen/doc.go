// Command scalegen writes the inputs of the scale run (loadtest/scale.sh):
// an ext-authz config with N rules, N API keys or N rate-limit descriptor
// entries, built so that the request the run sends is decided by the last
// entry, and, for API keys, the pool of keys the run sends.
//
//	scalegen -kind rules -n 10000 -dir loadtest/.out/scale/rules-10000
//	scalegen -kind keys -n 1000000 -dir loadtest/.out/scale/keys-1000000
//	scalegen -kind descriptors -n 10000 -dir loadtest/.out/scale/descriptors-10000
//
// It writes DIR/config.yaml (loopback ports from the environment, as the
// other load-test configs), and DIR/api-keys.yaml with DIR/apikey-pool.txt
// (kind keys) or DIR/ratelimit/loadtest.yaml (kind descriptors). Paths in
// the config are DIR as given, so run it and ext-authz from the same
// directory (the repository root). The API keys are test keys made up
// here ("scale-key-<i>"); the file holds only their SHA-256 digests, as
// a real one does.
package main
