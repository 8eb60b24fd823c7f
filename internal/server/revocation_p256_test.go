package server

import (
	"crypto/elliptic"
	"math/big"
)

// negS is n-s for a P-256 signature's s, as 32 bytes.
func negS(s []byte) []byte {
	v := new(big.Int).SetBytes(s)
	v.Sub(elliptic.P256().Params().N, v)
	return v.FillBytes(make([]byte, 32))
}
