// Package deploy holds what an operator applies to a cluster to put
// ext-authz in front of every request at the Istio ingress gateway: the
// kustomize base and overlays (base/, redis/, overlays/dev, overlays/prod),
// the full mesh install (mesh/), and, next door, the gateway EnvoyFilters
// (../envoyfilters/). README.md is the walk-through.
//
// The package has no Go API. Its tests are the proof the manifests are
// right, since there is no cluster and no Envoy where they run:
//
//   - every YAML document in deploy/ and envoyfilters/, and the output of
//     every kustomization (kubectl kustomize), is decoded strictly into the
//     real types: client-go's scheme for Kubernetes kinds, istio.io/client-go
//     for Istio kinds with each spec decoded again by protojson into its
//     istio.io/api message (Istio's own decoders accept unknown fields),
//     and every EnvoyFilter patch value into its Envoy type with typed_config
//     resolved and the Envoy validation rules (ValidateAll) applied;
//   - the cross-references hold: cluster names and the extension provider
//     point at the real Service and port, selectors select pods, probes hit
//     declared ports, the NetworkPolicy admits the gateway, the ConfigMap's
//     config passes `ext-authz check-config`, and the descriptors the
//     gateway's rate_limits emit have limits in the shipped rate-limit file;
//   - testdata/misspelt/ holds deliberately broken copies, each of which must
//     be rejected, so a decoder that silently accepts typos fails the test.
//
// `make manifests` adds istioctl validate and istioctl analyze.
package deploy
