#!/usr/bin/env bash
# make manifests: istioctl validate and istioctl analyze over every manifest
# in deploy/ and envoyfilters/, offline (--use-kube=false).
#
# The only finding tolerated is IST0133's generic notice that EnvoyFilter
# "exposes internal implementation details": it is emitted for every
# EnvoyFilter, and we ship EnvoyFilters for what only they can do (the
# gateway hardening, the rate-limit filter, per-route context_extensions)
# and the EnvoyFilter way of attaching ext-authz (envoyfilters/README.md).
#
# Analysis runs over what an operator would apply together: the Istio
# install rendered from deploy/mesh/istio-operator.yaml (istioctl manifest
# generate, so the mesh config and its extension provider are seen), one
# ext-authz overlay, and one of the three mesh installs: the Istio Gateway
# with the CUSTOM AuthorizationPolicy (envoyfilters/, the default) or with
# the ext_authz EnvoyFilter (envoyfilters/envoyfilter-ext-authz/, or its
# HTTP-protocol twin envoyfilters/envoyfilter-ext-authz-http/), or the
# Gateway API variant (deploy/mesh/gateway-api, deploy/mesh/sample-gateway-api,
# envoyfilters/gateway-api/), and the optional mutual-TLS gateway
# (deploy/mesh/gateway-mtls) with the CUSTOM policy or with
# envoyfilters/envoyfilter-ext-authz-mtls/.
set -euo pipefail

istioctl=$(realpath "${1:?usage: check-manifests.sh path/to/istioctl}")
kubectl=${KUBECTL:-kubectl}
cd "$(dirname "$0")/../.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# out/ holds our manifests (validated and analyzed); the generated Istio
# install goes next to it (analyzed only: it is istioctl's own output).
out=$tmp/manifests
mkdir "$out"

render() { "$kubectl" kustomize "$1" >"$out/$2.yaml"; }
render deploy/overlays/dev overlay-dev
render deploy/overlays/prod overlay-prod
render deploy/mesh/gateway mesh-gateway
render deploy/mesh/gateway-api mesh-gateway-api
render deploy/mesh/gateway-mtls mesh-gateway-mtls
render deploy/mesh/ext-authz mesh-ext-authz
render deploy/mesh/sample mesh-sample
render deploy/mesh/sample-gateway-api mesh-sample-gateway-api
render deploy/mesh/addons mesh-addons
render envoyfilters envoyfilters
render envoyfilters/envoyfilter-ext-authz envoyfilters-envoyfilter-ext-authz
render envoyfilters/envoyfilter-ext-authz-http envoyfilters-envoyfilter-ext-authz-http
render envoyfilters/envoyfilter-ext-authz-mtls envoyfilters-envoyfilter-ext-authz-mtls
render envoyfilters/gateway-api envoyfilters-gateway-api
cp deploy/mesh/istio-operator.yaml "$out/istio-operator.yaml"
cp deploy/mesh/ext-authz/peerauthentication-permissive.yaml "$out/peerauthentication-permissive.yaml"
"$istioctl" manifest generate -f deploy/mesh/istio-operator.yaml >"$tmp/install.yaml" 2>"$tmp/install.err" || {
	cat "$tmp/install.err"
	echo "istioctl manifest generate failed on deploy/mesh/istio-operator.yaml"
	exit 1
}

notice='EnvoyFilter exposes internal implementation details'
fail=0

echo "istioctl validate"
set +e
validate=$("$istioctl" validate -f "$out" 2>&1)
rc=$?
set -e
echo "$validate" | grep -v "$notice" || true
# Warnings are listed as "\t* Kind/ns/name: message" under "has warnings".
if [ $rc -ne 0 ] || echo "$validate" | grep -E '^\s+\* ' | grep -qv "$notice"; then
	echo "FAIL: istioctl validate found problems"
	fail=1
fi

analyze() {
	local name=$1
	shift
	echo "istioctl analyze ($name)"
	local report
	report=$("$istioctl" analyze --use-kube=false -A --output-threshold Info --failure-threshold Error "$@" 2>&1) || true
	local findings
	findings=$(echo "$report" | grep -E '^(Error|Warning|Info) \[' | grep -v "IST0133.*$notice" || true)
	if [ -n "$findings" ]; then
		echo "$findings"
		echo "FAIL: istioctl analyze ($name) found problems"
		fail=1
	elif echo "$report" | grep -q '^Error'; then
		echo "$report"
		echo "FAIL: istioctl analyze ($name) did not run"
		fail=1
	fi
}
mesh=("$tmp/install.yaml" "$out/mesh-gateway.yaml" "$out/mesh-ext-authz.yaml" "$out/mesh-sample.yaml" "$out/mesh-addons.yaml")
mtls=("$tmp/install.yaml" "$out/mesh-gateway-mtls.yaml" "$out/mesh-ext-authz.yaml" "$out/mesh-sample.yaml" "$out/mesh-addons.yaml")
gwapi=("$tmp/install.yaml" "$out/mesh-gateway-api.yaml" "$out/mesh-ext-authz.yaml" "$out/mesh-sample-gateway-api.yaml" "$out/mesh-addons.yaml")
analyze "dev + CUSTOM provider" "${mesh[@]}" "$out/overlay-dev.yaml" "$out/envoyfilters.yaml"
analyze "prod + CUSTOM provider" "${mesh[@]}" "$out/overlay-prod.yaml" "$out/envoyfilters.yaml"
analyze "prod + EnvoyFilter" "${mesh[@]}" "$out/overlay-prod.yaml" "$out/envoyfilters-envoyfilter-ext-authz.yaml"
analyze "prod + EnvoyFilter (HTTP)" "${mesh[@]}" "$out/overlay-prod.yaml" "$out/envoyfilters-envoyfilter-ext-authz-http.yaml"
analyze "prod + Gateway API" "${gwapi[@]}" "$out/overlay-prod.yaml" "$out/envoyfilters-gateway-api.yaml"
analyze "prod + mutual TLS + CUSTOM provider" "${mtls[@]}" "$out/overlay-prod.yaml" "$out/envoyfilters.yaml"
analyze "prod + mutual TLS + EnvoyFilter (certificate)" "${mtls[@]}" "$out/overlay-prod.yaml" "$out/envoyfilters-envoyfilter-ext-authz-mtls.yaml"

if [ $fail -ne 0 ]; then
	exit 1
fi
echo "manifests: istioctl validate and analyze found nothing but the EnvoyFilter notice"
