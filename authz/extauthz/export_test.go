package extauthz

// SafeForTest is safe, for the tests' generators.
func SafeForTest(s string) string { return safe(s) }

// LeanServiceDesc is the service Register registers, for benchmarks that
// call its handler without a network.
var LeanServiceDesc = &leanServiceDesc
