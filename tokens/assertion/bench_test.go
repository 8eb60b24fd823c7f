package assertion

import (
	"testing"

	"github.com/ext-authz/ext-authz/internal/benchcpu"
)

// BenchmarkMint is one assertion for a principal seen before (cached) and
// one signed every time (per decision), per algorithm.
func BenchmarkMint(b *testing.B) {
	for _, alg := range []string{ES256, EdDSA} {
		for _, perDecision := range []bool{false, true} {
			ring, err := NewGeneratedRing(alg, RingOptions{})
			if err != nil {
				b.Fatal(err)
			}
			m, err := NewMinter(ring, MinterOptions{Issuer: "https://ext-authz.example", Claims: []string{"email", "groups"}, PerDecision: perDecision})
			if err != nil {
				b.Fatal(err)
			}
			name := "alg=" + alg + "/mode=cached"
			if perDecision {
				name = "alg=" + alg + "/mode=per-decision"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				benchcpu.Report(b)
				for b.Loop() {
					if tok, err := m.Mint(&principal, "oidc", "orders", "d-1"); err != nil || len(tok) < 100 {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
