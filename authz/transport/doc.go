// Package transport holds what every adapter of the decision pipeline
// shares, whatever wire it speaks: the one table from decision codes to
// HTTP statuses, the denial's JSON body and headers, the decision series,
// and the traced, measured call to the Decider. authz/extauthz (Envoy's gRPC
// Check) and authz/httpauthz (Envoy's HTTP ext_authz service) both use it,
// so the two transports answer a request the same way by construction.
//
// Like authz it is proto-free: a transport's own types stay in its adapter.
package transport
