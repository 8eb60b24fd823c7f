// Package load is the engine of the throughput harness (cmd/authzload):
// it drives a Call function closed loop (N workers, each sending its next
// request when the last one answered) or open loop (requests scheduled at a
// fixed arrival rate, latency measured from the scheduled send time, so a
// stalled server is charged for the requests it delayed rather than
// hiding them: no coordinated omission), and summarises throughput,
// latency percentiles and the mix of outcomes.
//
// It knows nothing about gRPC or Envoy: cmd/authzload supplies the Call.
// It only measures; it never decides whether a result is good enough.
package load
