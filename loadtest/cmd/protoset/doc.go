// Command protoset writes a FileDescriptorSet holding Envoy's Check
// (envoy.service.auth.v3) and ShouldRateLimit (envoy.service.ratelimit.v3)
// services with every file they import, taken from the descriptors that
// go-control-plane registers in this binary. k6 loads it with
// client.loadProtoset() once per VU in its init context.
//
//	go run ./loadtest/cmd/protoset -o loadtest/.out/envoy.protoset
//
// Why not k6's load() or server reflection: load() cannot resolve the
// Envoy protos without vendoring them and their validate/udpa/xds
// imports, and reflection makes every VU fetch megabytes of descriptors
// from the server under test when it connects, which shows up in the
// results as latency and in the server as memory. The set is generated at
// run time from the go.mod-pinned go-control-plane, so it never drifts from
// what ext-authz serves.
package main
