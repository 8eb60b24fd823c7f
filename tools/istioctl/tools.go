//go:build tools

// Package tools pins istioctl, which `make manifests` builds into tools/bin/
// to run `istioctl validate` and `istioctl analyze` over deploy/ and
// envoyfilters/. It is a separate module so that Istio's large dependency
// graph never enters the service's go.mod.
package tools

import _ "istio.io/istio/istioctl/cmd/istioctl"
