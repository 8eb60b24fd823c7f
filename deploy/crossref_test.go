package deploy

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3api "istio.io/api/networking/v1alpha3"
	securityv1beta1api "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	k8snetworkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
)

// The service as the EnvoyFilters and the extension provider address it.
const (
	serviceName      = "ext-authz"
	serviceNamespace = "ext-authz"
	grpcPortName     = "grpc"
	healthService    = "envoy.service.auth.v3.Authorization"
	gatewayNamespace = "istio-ingress"
	// gatewayNameLabel marks the pods of a Gateway API Gateway; Istio
	// attaches targetRefs policies by it.
	gatewayNameLabel = "gateway.networking.k8s.io/gateway-name"
	providerName     = "ext-authz-grpc"
	// The HTTP ext_authz variant: its Service port and provider.
	httpPortName     = "http-authz"
	httpProviderName = "ext-authz-http"
)

// overlays are the kustomize overlays an operator applies.
var overlays = []string{"deploy/overlays/dev", "deploy/overlays/prod"}

// externalSecrets are the Secrets prod expects to be created out of band
// (deploy/README.md, "Secrets"); dev generates them.
var externalSecrets = map[string]bool{"ext-authz-keys": true, "ext-authz-redis": true}

// meshSets are the mesh installs an operator chooses between: the Istio
// Gateway with ext-authz attached by the CUSTOM AuthorizationPolicy (the
// default) or by the EnvoyFilter, and the Gateway API variant of the
// ingress. They are alternatives, so each is checked on its own: objects of
// one would hide a piece missing from another.
var meshSets = map[string][]string{
	"custom":      {"deploy/mesh/gateway", "deploy/mesh/ext-authz", "deploy/mesh/sample", "deploy/mesh/addons", "envoyfilters"},
	"envoyfilter": {"deploy/mesh/gateway", "deploy/mesh/ext-authz", "deploy/mesh/sample", "deploy/mesh/addons", "envoyfilters/envoyfilter-ext-authz"},
	"envoyfilter-http": {"deploy/mesh/gateway", "deploy/mesh/ext-authz", "deploy/mesh/sample", "deploy/mesh/addons",
		"envoyfilters/envoyfilter-ext-authz-http"},
	"gateway-api": {"deploy/mesh/gateway-api", "deploy/mesh/ext-authz", "deploy/mesh/sample-gateway-api", "deploy/mesh/addons", "envoyfilters/gateway-api"},
	// The optional mutual-TLS gateway (mtls_test.go), with either way of
	// attaching ext-authz.
	"custom-mtls":      {"deploy/mesh/gateway-mtls", "deploy/mesh/ext-authz", "deploy/mesh/sample", "deploy/mesh/addons", "envoyfilters"},
	"envoyfilter-mtls": {"deploy/mesh/gateway-mtls", "deploy/mesh/ext-authz", "deploy/mesh/sample", "deploy/mesh/addons", "envoyfilters/envoyfilter-ext-authz-mtls"},
}

const istioOperatorFile = "deploy/mesh/istio-operator.yaml"

// meshObjects is one mesh install: gateway, ext-authz mesh settings, the
// sample, how ext-authz is attached, and the IstioOperator.
func meshObjects(c *corpus, set string) []*object {
	dirs, ok := meshSets[set]
	if !ok {
		panic("no mesh set " + set) // a typo in a test
	}
	var out []*object
	for _, d := range dirs {
		out = append(out, c.Rendered[d]...)
	}
	out = append(out, c.Files[istioOperatorFile]...)
	return out
}

// eachMeshSet runs f as a subtest for every mesh install.
func eachMeshSet(t *testing.T, c *corpus, f func(t *testing.T, set string, mesh []*object)) {
	t.Helper()
	for _, set := range slices.Sorted(maps.Keys(meshSets)) {
		t.Run(set, func(t *testing.T) { f(t, set, meshObjects(c, set)) })
	}
}

func mustCorpus(t *testing.T) *corpus {
	t.Helper()
	c := loadCorpus(t)
	if len(c.Errs) > 0 {
		t.Fatalf("manifests do not decode (see TestManifestsDecodeStrictly): %v", c.Errs[0])
	}
	return c
}

// grpcService returns the ext-authz Service and its gRPC port.
func grpcService(t *testing.T, objs []*object) (*corev1.Service, corev1.ServicePort) {
	t.Helper()
	svc, err := one[*corev1.Service](objs, serviceName)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Namespace != serviceNamespace {
		t.Fatalf("Service %s is in namespace %q, want %q", svc.Name, svc.Namespace, serviceNamespace)
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == grpcPortName {
			if p.AppProtocol == nil || *p.AppProtocol != "grpc" {
				t.Errorf("Service port %s: appProtocol must be grpc so Istio speaks HTTP/2", p.Name)
			}
			return svc, p
		}
	}
	t.Fatalf("Service %s has no port named %s", svc.Name, grpcPortName)
	return nil, corev1.ServicePort{}
}

// servicePort returns the ext-authz Service's port named name.
func servicePort(t *testing.T, svc *corev1.Service, name string) corev1.ServicePort {
	t.Helper()
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("Service %s has no port named %s", svc.Name, name)
	return corev1.ServicePort{}
}

// serviceConfigText is the service config the ConfigMap of objs holds.
func serviceConfigText(t *testing.T, objs []*object) serverConfig {
	t.Helper()
	var cfg serverConfig
	for _, m := range find[*corev1.ConfigMap](objs, "") {
		if strings.HasPrefix(m.Name, "ext-authz-config") {
			if err := yaml.Unmarshal([]byte(m.Data["config.yaml"]), &cfg); err != nil {
				t.Fatal(err)
			}
			return cfg
		}
	}
	t.Fatal("no ext-authz-config ConfigMap")
	return cfg
}

func fqdn(svc *corev1.Service) string {
	return svc.Name + "." + svc.Namespace + ".svc.cluster.local"
}

// envoyFilters decodes the EnvoyFilters of a set of objects.
func envoyFilters(t *testing.T, objs []*object) map[string]*envoyFilter {
	t.Helper()
	out := map[string]*envoyFilter{}
	for _, o := range objs {
		if _, ok := o.Obj.(*networkingv1alpha3.EnvoyFilter); !ok {
			continue
		}
		ef, err := parseEnvoyFilter(o.Raw)
		if err != nil {
			t.Fatalf("%s: %v", o, err)
		}
		out[o.Name] = ef
	}
	return out
}

// httpFilter returns the typed config of the HTTP filter a patch inserts.
func httpFilter(t *testing.T, p envoyPatch) (string, any) {
	t.Helper()
	f, ok := p.Value.(*hcmv3.HttpFilter)
	if !ok {
		t.Fatalf("HTTP_FILTER patch value is %T", p.Value)
	}
	cfg, err := f.GetTypedConfig().UnmarshalNew()
	if err != nil {
		t.Fatalf("filter %s: %v", f.GetName(), err)
	}
	return f.GetName(), cfg
}

func TestEnvoyFiltersPointAtTheService(t *testing.T) {
	c := mustCorpus(t)
	iop := theIstioOperator(t, c)
	for _, ov := range overlays {
		t.Run(filepath.Base(ov), func(t *testing.T) {
			svc, port := grpcService(t, c.Rendered[ov])
			want := fmt.Sprintf("outbound|%d||%s", port.Port, fqdn(svc))
			provider := checkProvider(t, iop, svc, port)
			httpPort := servicePort(t, svc, httpPortName)
			wantHTTP := fmt.Sprintf("outbound|%d||%s", httpPort.Port, fqdn(svc))
			cfg := serviceConfigText(t, c.Rendered[ov])
			httpProvider := checkHTTPProvider(t, iop, svc, httpPort, cfg)
			eachMeshSet(t, c, func(t *testing.T, set string, mesh []*object) {
				var efAuthz *extauthzv3.ExtAuthz
				var rateLimits int
				for name, ef := range envoyFilters(t, mesh) {
					for _, p := range ef.Patches {
						if p.ApplyTo != networkingv1alpha3api.EnvoyFilter_HTTP_FILTER || p.Value == nil {
							continue
						}
						fname, cfg := httpFilter(t, p)
						var got string
						switch cfg := cfg.(type) {
						case *extauthzv3.ExtAuthz:
							got = cfg.GetGrpcService().GetEnvoyGrpc().GetClusterName()
							if hs := cfg.GetHttpService(); hs != nil {
								got = hs.GetServerUri().GetCluster()
								if got == wantHTTP {
									got = want // the HTTP port of the same Service
								}
								checkHTTPExtAuthz(t, name, cfg, httpProvider)
							}
							checkExtAuthz(t, name, cfg)
							efAuthz = cfg
						case *ratelimitv3.RateLimit:
							got = cfg.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName()
							rateLimits++
						default:
							continue
						}
						if got != want {
							t.Errorf("EnvoyFilter %s filter %s: cluster_name %q, want %q (Service %s/%s port %s)",
								name, fname, got, want, svc.Namespace, svc.Name, port.Name)
						}
					}
				}
				if rateLimits != 1 {
					t.Errorf("found %d rate-limit filters, want the gateway's one", rateLimits)
				}

				// ext-authz is attached exactly one way.
				custom := customPolicies(mesh)
				for _, ap := range custom {
					if ap.Spec.GetProvider().GetName() != providerName {
						t.Errorf("AuthorizationPolicy %s uses provider %q, want %q (meshConfig.extensionProviders)", ap.Name, ap.Spec.GetProvider().GetName(), providerName)
					}
				}
				switch {
				case efAuthz != nil && len(custom) > 0:
					t.Error("both an ext_authz EnvoyFilter and a CUSTOM AuthorizationPolicy: every request would be checked twice")
				case efAuthz == nil && len(custom) == 0:
					t.Error("neither an ext_authz EnvoyFilter nor a CUSTOM AuthorizationPolicy: nothing checks requests")
				case efAuthz != nil:
					// Either way of wiring the gateway behaves the same.
					if a, b := extAuthzTimeout(efAuthz), provider.GetTimeout().AsDuration(); a != b {
						t.Errorf("EnvoyFilter timeout %v and extension provider timeout %v differ", a, b)
					}
					if a, b := strconv.Itoa(int(efAuthz.GetStatusOnError().GetCode())), provider.GetStatusOnError(); a != b {
						t.Errorf("EnvoyFilter status_on_error %s and extension provider statusOnError %s differ", a, b)
					}
				}
				if !strings.HasPrefix(set, "envoyfilter") && len(custom) == 0 {
					t.Errorf("mesh set %s: the CUSTOM AuthorizationPolicy is the default way to attach ext-authz", set)
				}

				// DestinationRule for the locality-aware calls to ext-authz.
				var dr *networkingv1.DestinationRule
				for _, d := range find[*networkingv1.DestinationRule](mesh, "") {
					if d.Spec.GetHost() == fqdn(svc) {
						dr = d
					}
				}
				if dr == nil {
					t.Fatalf("no DestinationRule for host %s", fqdn(svc))
				}
				checkLocality(t, dr)
			})
		})
	}
}

// checkProvider checks the extension provider the CUSTOM policies name and
// returns it.
func checkProvider(t *testing.T, iop *istioOperator, svc *corev1.Service, port corev1.ServicePort) *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider {
	t.Helper()
	for _, p := range iop.Mesh.GetExtensionProviders() {
		g := p.GetEnvoyExtAuthzGrpc()
		if p.GetName() != providerName || g == nil {
			continue
		}
		if g.GetService() != fqdn(svc) || g.GetPort() != uint32(port.Port) {
			t.Errorf("extension provider %s: %s:%d, want %s:%d", p.GetName(), g.GetService(), g.GetPort(), fqdn(svc), port.Port)
		}
		if g.GetFailOpen() {
			t.Errorf("extension provider %s: failOpen must be false", p.GetName())
		}
		if d := g.GetTimeout().AsDuration(); d <= 0 || d > time.Second {
			t.Errorf("extension provider %s: timeout %v; set it explicitly, under a second (Istio's default is 600s)", p.GetName(), d)
		}
		if g.GetStatusOnError() == "" || g.GetStatusOnError() == "403" {
			t.Errorf("extension provider %s: statusOnError %q must be set and differ from 403", p.GetName(), g.GetStatusOnError())
		}
		return g
	}
	t.Fatalf("meshConfig.extensionProviders has no envoyExtAuthzGrpc named %s", providerName)
	return nil
}

// customPolicies returns the AuthorizationPolicies with action CUSTOM.
func customPolicies(objs []*object) []*securityv1.AuthorizationPolicy {
	var out []*securityv1.AuthorizationPolicy
	for _, ap := range find[*securityv1.AuthorizationPolicy](objs, "") {
		if ap.Spec.GetAction() == securityv1beta1api.AuthorizationPolicy_CUSTOM {
			out = append(out, ap)
		}
	}
	return out
}

func checkExtAuthz(t *testing.T, ef string, cfg *extauthzv3.ExtAuthz) {
	t.Helper()
	if cfg.GetFailureModeAllow() {
		t.Errorf("EnvoyFilter %s: failure_mode_allow must be false (fail closed)", ef)
	}
	if d := extAuthzTimeout(cfg); d <= 0 || d > time.Second {
		t.Errorf("EnvoyFilter %s: the service timeout %v; set it explicitly, under a second", ef, d)
	}
	if code := cfg.GetStatusOnError().GetCode(); code == 0 || code == 403 {
		t.Errorf("EnvoyFilter %s: status_on_error %v must be set and differ from 403", ef, code)
	}
	if cfg.GetTransportApiVersion().String() != "V3" {
		t.Errorf("EnvoyFilter %s: transport_api_version %v, want V3", ef, cfg.GetTransportApiVersion())
	}
	if cfg.GetWithRequestBody() != nil {
		t.Errorf("EnvoyFilter %s: request bodies must not be forwarded by default", ef)
	}
}

// extAuthzTimeout is the timeout of the filter's call, on either protocol.
func extAuthzTimeout(cfg *extauthzv3.ExtAuthz) time.Duration {
	if hs := cfg.GetHttpService(); hs != nil {
		return hs.GetServerUri().GetTimeout().AsDuration()
	}
	return cfg.GetGrpcService().GetTimeout().AsDuration()
}

// checkHTTPProvider checks the envoyExtAuthzHttp provider against the
// Service's HTTP port, the service config and the gRPC provider it is an
// alternative to, and returns it.
func checkHTTPProvider(t *testing.T, iop *istioOperator, svc *corev1.Service, port corev1.ServicePort, cfg serverConfig) *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider {
	t.Helper()
	if cfg.Server.HTTPAddress == "" {
		t.Fatalf("the service config has no server.http_address, but Service port %s exists", port.Name)
	}
	if port.TargetPort.String() != port.Name {
		t.Errorf("Service port %s targets %s; want the container port of that name (TestDeploymentMatchesConfig ties it to server.http_address)", port.Name, port.TargetPort.String())
	}
	for _, p := range iop.Mesh.GetExtensionProviders() {
		h := p.GetEnvoyExtAuthzHttp()
		if p.GetName() != httpProviderName || h == nil {
			continue
		}
		if h.GetService() != fqdn(svc) || h.GetPort() != uint32(port.Port) {
			t.Errorf("extension provider %s: %s:%d, want %s:%d", p.GetName(), h.GetService(), h.GetPort(), fqdn(svc), port.Port)
		}
		if h.GetPathPrefix() != cfg.Server.HTTP.PathPrefix {
			t.Errorf("extension provider %s: pathPrefix %q, the service expects %q (server.http.path_prefix)", p.GetName(), h.GetPathPrefix(), cfg.Server.HTTP.PathPrefix)
		}
		if h.GetFailOpen() {
			t.Errorf("extension provider %s: failOpen must be false", p.GetName())
		}
		if d := h.GetTimeout().AsDuration(); d <= 0 || d > time.Second {
			t.Errorf("extension provider %s: timeout %v; set it explicitly, under a second", p.GetName(), d)
		}
		if h.GetStatusOnError() != "503" {
			t.Errorf("extension provider %s: statusOnError %q, want 503 (Envoy answers every 5xx of an HTTP authorizer with it)", p.GetName(), h.GetStatusOnError())
		}
		// The decision reads and strips these; Envoy forwards only what is listed.
		for _, need := range []string{"x-api-key", "x-udb-token", "x-forwarded-for", "x-request-id", "traceparent", "x-auth*", "x_auth*", "x-http-method-override"} {
			if !slices.Contains(h.GetIncludeRequestHeadersInCheck(), need) {
				t.Errorf("extension provider %s: includeRequestHeadersInCheck lacks %s", p.GetName(), need)
			}
		}
		if !slices.Contains(h.GetHeadersToUpstreamOnAllow(), "x-auth-*") {
			t.Errorf("extension provider %s: headersToUpstreamOnAllow must carry the identity headers (x-auth-*)", p.GetName())
		}
		if !slices.Contains(h.GetHeadersToDownstreamOnDeny(), "www-authenticate") {
			t.Errorf("extension provider %s: headersToDownstreamOnDeny must carry the challenges", p.GetName())
		}
		return h
	}
	t.Fatalf("meshConfig.extensionProviders has no envoyExtAuthzHttp named %s", httpProviderName)
	return nil
}

// checkHTTPExtAuthz checks an EnvoyFilter's http_service against the HTTP
// provider: either way of wiring the gateway behaves the same.
func checkHTTPExtAuthz(t *testing.T, ef string, cfg *extauthzv3.ExtAuthz, p *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
	t.Helper()
	hs := cfg.GetHttpService()
	if pats := cfg.GetAllowedHeaders().GetPatterns(); len(pats) != 1 || pats[0].GetSafeRegex().GetRegex() != ".*" {
		t.Errorf("EnvoyFilter %s: allowed_headers must forward every request header (safe_regex .*), as the gRPC protocol does: a decision can strip only forged headers it sees", ef)
	}
	if hs.GetPathPrefix() != p.GetPathPrefix() {
		t.Errorf("EnvoyFilter %s: path_prefix %q, provider pathPrefix %q", ef, hs.GetPathPrefix(), p.GetPathPrefix())
	}
	if a, b := hs.GetServerUri().GetTimeout().AsDuration(), p.GetTimeout().AsDuration(); a != b {
		t.Errorf("EnvoyFilter %s: timeout %v, provider %v", ef, a, b)
	}
	ups := hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns()
	if len(ups) == 0 || ups[0].GetPrefix() != "x-auth-" {
		t.Errorf("EnvoyFilter %s: allowed_upstream_headers must carry the identity headers (prefix x-auth-)", ef)
	}
}

func checkLocality(t *testing.T, dr *networkingv1.DestinationRule) {
	t.Helper()
	tp := dr.Spec.GetTrafficPolicy()
	od := tp.GetOutlierDetection()
	if od == nil || od.GetConsecutive_5XxErrors().GetValue() == 0 || od.GetInterval() == nil || od.GetBaseEjectionTime() == nil {
		t.Errorf("DestinationRule %s: outlierDetection needs consecutive5xxErrors, interval and baseEjectionTime (locality LB depends on it)", dr.Name)
	}
	ll := tp.GetLoadBalancer().GetLocalityLbSetting()
	if ll == nil || !ll.GetEnabled().GetValue() || len(ll.GetFailover()) == 0 {
		t.Errorf("DestinationRule %s: localityLbSetting must be enabled with failover between regions", dr.Name)
	}
}

func theIstioOperator(t *testing.T, c *corpus) *istioOperator {
	t.Helper()
	objs := c.Files["deploy/mesh/istio-operator.yaml"]
	if len(objs) != 1 {
		t.Fatalf("deploy/mesh/istio-operator.yaml: %d documents, want 1", len(objs))
	}
	iop, ok := objs[0].Obj.(*istioOperator)
	if !ok {
		t.Fatalf("deploy/mesh/istio-operator.yaml holds %T", objs[0].Obj)
	}
	return iop
}

// TestSelectorsAndPorts: every Service, PDB, NetworkPolicy and HPA in every
// rendered set finds its pods; every probe and Service target port is a
// declared container port.
func TestSelectorsAndPorts(t *testing.T) {
	c := mustCorpus(t)
	sets := map[string][]*object{}
	for _, ov := range overlays {
		sets[ov] = c.Rendered[ov]
	}
	for set := range meshSets {
		sets["mesh-"+set] = meshObjects(c, set)
	}
	for name, objs := range sets {
		t.Run(filepath.Base(name), func(t *testing.T) {
			ps := pods(objs)
			if len(ps) == 0 {
				t.Fatal("no workloads")
			}
			for _, p := range ps {
				for _, ctr := range p.Template.Spec.Containers {
					for kind, pr := range map[string]*corev1.Probe{"startup": ctr.StartupProbe, "liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe} {
						if port, ok := probePort(pr); ok {
							if _, ok := containerPort(&ctr, port); !ok {
								t.Errorf("%s container %s: %s probe port %s is not a container port", p.Owner, ctr.Name, kind, portString(port))
							}
						}
					}
				}
			}
			checkReferences(t, name, objs, ps)
			for _, d := range find[*appsv1.Deployment](objs, "") {
				sel, err := labelSelector(d.Spec.Selector)
				if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
					t.Errorf("Deployment %s: selector does not match its own pod labels (%v)", d.Name, err)
				}
			}
			for _, svc := range find[*corev1.Service](objs, "") {
				if len(svc.Spec.Selector) == 0 {
					t.Errorf("Service %s: no selector", svc.Name)
					continue
				}
				matched := selects(labels.SelectorFromSet(svc.Spec.Selector), svc.Namespace, ps)
				if len(matched) == 0 {
					t.Errorf("Service %s/%s selects no pods", svc.Namespace, svc.Name)
				}
				for _, sp := range svc.Spec.Ports {
					for _, p := range matched {
						var ok bool
						for _, ctr := range p.Template.Spec.Containers {
							if _, hit := containerPort(&ctr, sp.TargetPort); hit {
								ok = true
							}
						}
						if !ok {
							t.Errorf("Service %s port %s: targetPort %s is not a port of %s", svc.Name, sp.Name, portString(sp.TargetPort), p.Owner)
						}
					}
				}
			}
			for _, pdb := range find[*policyv1.PodDisruptionBudget](objs, "") {
				sel, err := labelSelector(pdb.Spec.Selector)
				if err != nil || len(selects(sel, pdb.Namespace, ps)) == 0 {
					t.Errorf("PodDisruptionBudget %s selects no pods (%v)", pdb.Name, err)
				}
			}
			for _, np := range find[*k8snetworkingv1.NetworkPolicy](objs, "") {
				sel, err := labelSelector(&np.Spec.PodSelector)
				if err != nil || len(selects(sel, np.Namespace, ps)) == 0 {
					t.Errorf("NetworkPolicy %s selects no pods (%v)", np.Name, err)
				}
			}
			for _, hpa := range find[*autoscalingv2.HorizontalPodAutoscaler](objs, "") {
				ref := hpa.Spec.ScaleTargetRef
				deps := find[*appsv1.Deployment](objs, ref.Name)
				if ref.Kind != "Deployment" || len(deps) != 1 {
					t.Errorf("HorizontalPodAutoscaler %s targets %s %s, which is not in the set", hpa.Name, ref.Kind, ref.Name)
					continue
				}
				// An applied replicas field fights the HPA on every apply.
				if deps[0].Spec.Replicas != nil {
					t.Errorf("Deployment %s sets replicas, but HorizontalPodAutoscaler %s owns them", ref.Name, hpa.Name)
				}
			}
		})
	}
}

// TestGatewayWiring: the EnvoyFilters, the Gateway, the CUSTOM policy and
// the NetworkPolicy all select the gateway pods that the DaemonSet runs.
func TestGatewayWiring(t *testing.T) {
	c := mustCorpus(t)
	eachMeshSet(t, c, func(t *testing.T, _ string, mesh []*object) { checkGatewayWiring(t, c, mesh) })
}

func checkGatewayWiring(t *testing.T, c *corpus, mesh []*object) {
	t.Helper()
	ds, err := one[*appsv1.DaemonSet](mesh, "istio-ingressgateway")
	if err != nil {
		t.Fatal(err)
	}
	if ds.Namespace != gatewayNamespace {
		t.Fatalf("gateway DaemonSet in %q, want %q", ds.Namespace, gatewayNamespace)
	}
	podLabels := labels.Set(ds.Spec.Template.Labels)
	if ds.Spec.Template.Spec.NodeSelector["front_end"] != "true" {
		t.Errorf("gateway DaemonSet must run on nodes labelled front_end=true")
	}
	hostPorts := map[int32]int32{}
	for _, ctr := range ds.Spec.Template.Spec.Containers {
		for _, p := range ctr.Ports {
			if p.HostPort != 0 {
				hostPorts[p.HostPort] = p.ContainerPort
			}
		}
	}
	svc, err := one[*corev1.Service](mesh, "istio-ingressgateway")
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("gateway Service type %s, want ClusterIP (clients come in through hostPort)", svc.Spec.Type)
	}
	for _, hp := range []int32{80, 443} {
		cp, ok := hostPorts[hp]
		if !ok {
			t.Errorf("gateway DaemonSet has no hostPort %d", hp)
			continue
		}
		// The Gateway's port numbers are Service ports; the Service must
		// map them to the same container port the node's port goes to.
		var mapped bool
		for _, sp := range svc.Spec.Ports {
			if sp.Port == hp && sp.TargetPort == intstr.FromInt32(cp) {
				mapped = true
			}
		}
		if !mapped {
			t.Errorf("gateway Service does not map port %d to container port %d like hostPort %d does", hp, cp, hp)
		}
	}

	within := func(what string, sel map[string]string) {
		t.Helper()
		if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(podLabels) {
			t.Errorf("%s selects %v, which does not match the gateway pods %v", what, sel, podLabels)
		}
	}
	// A policy reaches the gateway by a selector, or, when the pods belong to
	// a Gateway API Gateway, by targetRefs to that Gateway (Istio ignores
	// the selector of a policy that has targetRefs, and on a Gateway API
	// gateway honours selectors only while ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY
	// is on).
	gwName := podLabels[gatewayNameLabel]
	attached := func(what, ns string, sel map[string]string, refs []*typev1beta1.PolicyTargetReference) {
		t.Helper()
		switch {
		case len(refs) > 0 && len(sel) > 0:
			t.Errorf("%s has both a selector and targetRefs", what)
		case len(refs) > 0:
			if gwName == "" {
				t.Errorf("%s uses targetRefs, but the gateway pods carry no %s label", what, gatewayNameLabel)
			}
			if ns != ds.Namespace {
				t.Errorf("%s in namespace %s: targetRefs reach only workloads in the policy's own namespace (%s)", what, ns, ds.Namespace)
			}
			for _, r := range refs {
				if r.GetGroup() != gatewayv1.GroupName || r.GetKind() != "Gateway" || r.GetName() != gwName || (r.GetNamespace() != "" && r.GetNamespace() != ns) {
					t.Errorf("%s targets %s/%s %s/%s, want the gateway pods' Gateway %s", what, r.GetGroup(), r.GetKind(), r.GetNamespace(), r.GetName(), gwName)
				}
			}
		default:
			if gwName != "" {
				t.Errorf("%s selects by labels; the gateway belongs to Gateway %s: attach it with targetRefs", what, gwName)
			}
			within(what, sel)
		}
	}
	if gwName != "" {
		var found bool
		for _, g := range find[*gatewayv1.Gateway](mesh, gwName) {
			found = found || g.Namespace == ds.Namespace
		}
		if !found {
			t.Errorf("the gateway pods belong to Gateway %s/%s, which is not in the set", ds.Namespace, gwName)
		}
	}
	efs := envoyFilters(t, mesh)
	if len(efs) == 0 {
		t.Fatal("no EnvoyFilters")
	}
	for _, o := range mesh {
		ef, ok := o.Obj.(*networkingv1alpha3.EnvoyFilter)
		if !ok {
			continue
		}
		attached("EnvoyFilter "+ef.Name, ef.Namespace, ef.Spec.GetWorkloadSelector().GetLabels(), ef.Spec.GetTargetRefs())
	}
	for name, ef := range efs {
		for i, p := range ef.Patches {
			if p.Match.GetContext() != networkingv1alpha3api.EnvoyFilter_GATEWAY {
				t.Errorf("EnvoyFilter %s configPatches[%d]: context %s, want GATEWAY", name, i, p.Match.GetContext())
			}
		}
	}
	for _, g := range find[*networkingv1.Gateway](mesh, "") {
		within("Gateway "+g.Name, g.Spec.GetSelector())
		for _, s := range g.Spec.GetServers() {
			var ok bool
			for _, sp := range svc.Spec.Ports {
				ok = ok || uint32(sp.Port) == s.GetPort().GetNumber()
			}
			if !ok {
				t.Errorf("Gateway %s server %s: port %d is not a gateway Service port", g.Name, s.GetPort().GetName(), s.GetPort().GetNumber())
			}
			if s.GetPort().GetProtocol() == "HTTPS" && s.GetTls().GetCredentialName() == "" {
				t.Errorf("Gateway %s server %s: HTTPS without credentialName (SDS)", g.Name, s.GetPort().GetName())
			}
		}
	}
	for _, ap := range find[*securityv1.AuthorizationPolicy](mesh, "") {
		attached("AuthorizationPolicy "+ap.Name, ap.Namespace, ap.Spec.GetSelector().GetMatchLabels(), ap.Spec.GetTargetRefs())
		if ap.Namespace != gatewayNamespace {
			t.Errorf("AuthorizationPolicy %s in %q: a policy only applies in its own namespace (%s)", ap.Name, ap.Namespace, gatewayNamespace)
		}
	}

	// The NetworkPolicy admits the gateway to the gRPC port, in every overlay.
	gwNS := namespaceLabels(mesh, gatewayNamespace)
	for _, ov := range overlays {
		objs := c.Rendered[ov]
		_, port := grpcService(t, objs)
		np, err := one[*k8snetworkingv1.NetworkPolicy](objs, serviceName)
		if err != nil {
			t.Fatalf("%s: %v", ov, err)
		}
		if !admits(np, gwNS, podLabels, port.TargetPort, int(port.Port)) {
			t.Errorf("%s: NetworkPolicy %s does not admit the gateway (%v in %v) to port %s", ov, np.Name, podLabels, gwNS, portString(port.TargetPort))
		}
		prom, err := one[*appsv1.Deployment](mesh, "prometheus")
		if err != nil {
			t.Fatal(err)
		}
		if !admits(np, namespaceLabels(mesh, prom.Namespace), labels.Set(prom.Spec.Template.Labels), intstr.FromString("http-admin"), 8081) {
			t.Errorf("%s: NetworkPolicy %s does not admit Prometheus to the admin port", ov, np.Name)
		}
		// Nobody else: a pod in the ext-authz namespace, or any other
		// labelled pod, is not admitted.
		if admits(np, namespaceLabels(objs, serviceNamespace), labels.Set{"app": "other"}, port.TargetPort, int(port.Port)) {
			t.Errorf("%s: NetworkPolicy %s admits arbitrary pods", ov, np.Name)
		}
	}
}

// admits reports whether a NetworkPolicy lets a pod with the labels, in a
// namespace with nsLabels, reach the port (by name or number).
func admits(np *k8snetworkingv1.NetworkPolicy, nsLabels, podLabels labels.Set, port intstr.IntOrString, number int) bool {
	for _, rule := range np.Spec.Ingress {
		var portOK bool
		for _, p := range rule.Ports {
			if p.Port == nil || *p.Port == port || (p.Port.Type == intstr.Int && int(p.Port.IntVal) == number) {
				portOK = true
			}
		}
		if len(rule.Ports) == 0 {
			portOK = true
		}
		if !portOK {
			continue
		}
		for _, peer := range rule.From {
			if peer.IPBlock != nil {
				continue
			}
			nsOK := peer.NamespaceSelector == nil && nsLabels["kubernetes.io/metadata.name"] == np.Namespace
			if peer.NamespaceSelector != nil {
				sel, err := labelSelector(peer.NamespaceSelector)
				nsOK = err == nil && sel.Matches(nsLabels)
			}
			podOK := peer.PodSelector == nil
			if peer.PodSelector != nil {
				sel, err := labelSelector(peer.PodSelector)
				podOK = err == nil && sel.Matches(podLabels)
			}
			if nsOK && podOK {
				return true
			}
		}
	}
	return false
}

// TestRouteNamesAndFilterOrder: the routes the EnvoyFilters patch by name exist in the
// VirtualServices, and the rate-limit filter is inserted relative to the
// ext_authz filter only after that filter exists.
func TestRouteNamesAndFilterOrder(t *testing.T) {
	c := mustCorpus(t)
	eachMeshSet(t, c, func(t *testing.T, _ string, mesh []*object) { checkRouteNamesAndFilterOrder(t, mesh) })
}

func checkRouteNamesAndFilterOrder(t *testing.T, mesh []*object) {
	t.Helper()
	routes := map[string]bool{}
	// Istio names the route it builds from an HTTPRoute rule after the
	// rule's name.
	for _, hr := range find[*gatewayv1.HTTPRoute](mesh, "") {
		for _, r := range hr.Spec.Rules {
			if r.Name != nil {
				routes[string(*r.Name)] = true
			}
		}
	}
	for _, vs := range find[*networkingv1.VirtualService](mesh, "") {
		for _, h := range vs.Spec.GetHttp() {
			routes[h.GetName()] = true
		}
		for _, g := range vs.Spec.GetGateways() {
			ns, name, ok := strings.Cut(g, "/")
			if !ok {
				ns, name = vs.Namespace, g
			}
			var found bool
			for _, gw := range find[*networkingv1.Gateway](mesh, name) {
				found = found || gw.Namespace == ns
			}
			if !found {
				t.Errorf("VirtualService %s: gateway %s does not exist", vs.Name, g)
			}
		}
	}
	efs := envoyFilters(t, mesh)
	inserted := map[string]int32{} // HTTP filter name -> priority of its EnvoyFilter
	for _, ef := range efs {
		for _, p := range ef.Patches {
			if p.ApplyTo == networkingv1alpha3api.EnvoyFilter_HTTP_FILTER && p.Value != nil {
				inserted[p.Value.(*hcmv3.HttpFilter).GetName()] = ef.Spec.GetPriority()
			}
		}
	}
	var named int
	for name, ef := range efs {
		if ef.Spec.GetPriority() == 0 {
			t.Errorf("EnvoyFilter %s: set an explicit priority", name)
		}
		for i, p := range ef.Patches {
			if r := p.Match.GetRouteConfiguration().GetVhost().GetRoute().GetName(); r != "" {
				named++
				if !routes[r] {
					t.Errorf("EnvoyFilter %s configPatches[%d]: no VirtualService http route or HTTPRoute rule named %q", name, i, r)
				}
			}
			sub := p.Match.GetListener().GetFilterChain().GetFilter().GetSubFilter().GetName()
			if prio, ours := inserted[sub]; ours && prio >= ef.Spec.GetPriority() {
				t.Errorf("EnvoyFilter %s (priority %d) patches relative to %s, which an EnvoyFilter of priority %d inserts: it must apply later",
					name, ef.Spec.GetPriority(), sub, prio)
			}
		}
	}
	if named == 0 {
		t.Error("no per-route patches found (health-check exemption, context_extensions)")
	}
	// The health route, where there is one, is exempt from ext_authz: by
	// ExtAuthzPerRoute (the EnvoyFilter way) or by a notPaths condition of
	// every CUSTOM policy's rules.
	if !routes["healthz"] {
		return
	}
	var exempt bool
	for _, ef := range efs {
		for _, p := range ef.Patches {
			r, ok := p.Value.(*routev3.Route)
			if !ok || p.Match.GetRouteConfiguration().GetVhost().GetRoute().GetName() != "healthz" {
				continue
			}
			pf, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
			if !ok {
				continue
			}
			m, err := pf.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			exempt = exempt || m.(*extauthzv3.ExtAuthzPerRoute).GetDisabled()
		}
	}
	for _, ap := range customPolicies(mesh) {
		rules := ap.Spec.GetRules()
		all := len(rules) > 0
		for _, r := range rules {
			var excludes bool
			for _, to := range r.GetTo() {
				excludes = excludes || slices.Contains(to.GetOperation().GetNotPaths(), "/healthz")
			}
			all = all && excludes
		}
		exempt = exempt || all
	}
	if !exempt {
		t.Error("the healthz route is not exempt from ext_authz (ExtAuthzPerRoute disabled, or notPaths /healthz in every rule of the CUSTOM policy)")
	}
}

// TestRateLimitDescriptorsHaveLimits: what the gateway's rate_limits actions
// emit, in the filter's domain, has a limit in the shipped rate-limit files.
func TestRateLimitDescriptorsHaveLimits(t *testing.T) {
	c := mustCorpus(t)
	eachMeshSet(t, c, func(t *testing.T, set string, mesh []*object) { checkRateLimitDescriptors(t, c, set, mesh) })
}

func checkRateLimitDescriptors(t *testing.T, c *corpus, set string, mesh []*object) {
	t.Helper()
	var domain string
	var descriptors [][]ratelimit.Entry
	for _, ef := range envoyFilters(t, mesh) {
		for _, p := range ef.Patches {
			switch v := p.Value.(type) {
			case *hcmv3.HttpFilter:
				if _, cfg := httpFilter(t, p); cfg != nil {
					if rl, ok := cfg.(*ratelimitv3.RateLimit); ok {
						domain = rl.GetDomain()
					}
				}
			case *routev3.Route:
				for _, rl := range v.GetRoute().GetRateLimits() {
					descriptors = append(descriptors, emitted(t, rl))
				}
			}
		}
	}
	if domain == "" || len(descriptors) == 0 {
		t.Fatalf("found domain %q and %d rate_limits; want the gateway's rate-limit filter and route actions", domain, len(descriptors))
	}
	for _, ov := range overlays {
		t.Run(filepath.Base(ov), func(t *testing.T) {
			var files []envoyconfig.File
			for _, m := range find[*corev1.ConfigMap](c.Rendered[ov], "") {
				if !strings.HasPrefix(m.Name, "ext-authz-ratelimit") {
					continue
				}
				for k, v := range m.Data {
					files = append(files, envoyconfig.File{Name: k, Content: []byte(v)})
				}
			}
			rules, err := envoyconfig.Parse(files)
			if err != nil {
				t.Fatal(err)
			}
			if !rules.HasDomain(domain) {
				t.Fatalf("rate-limit files define %v, not the gateway filter's domain %q", rules.Domains(), domain)
			}
			for _, d := range descriptors {
				if l := rules.Match(domain, &ratelimit.Descriptor{Entries: d}); l == nil || l.Unlimited {
					t.Errorf("descriptor %v in domain %q has no limit in the shipped files", d, domain)
				}
			}
			// Envoy's HTTP ext_authz protocol carries no context_extensions:
			// the HTTP variant sets none, and limits keyed by them do not
			// apply over it (docs/http-transport.md).
			if set != "envoyfilter-http" {
				checkContextExtensions(t, c, mesh, ov, rules)
			}
		})
	}
}

// policyConfig is the part of the service config that reads the gateway's
// context extensions.
type policyConfig struct {
	Policy struct {
		Rules []struct {
			Name       string `json:"name"`
			RateLimits *struct {
				Domain      string `json:"domain"`
				Descriptors []struct {
					Actions []map[string]map[string]any `json:"actions"`
				} `json:"descriptors"`
			} `json:"rate_limits"`
		} `json:"rules"`
	} `json:"policy"`
}

// checkContextExtensions: the context_extensions the EnvoyFilters set per
// route are read by the policy's rate_limits, every key the policy reads is
// set, and the descriptors built from them have limits.
func checkContextExtensions(t *testing.T, c *corpus, mesh []*object, ov string, rules *envoyconfig.Rules) {
	t.Helper()
	set := map[string]map[string]string{} // route name -> extensions
	for name, ef := range envoyFilters(t, mesh) {
		for _, p := range ef.Patches {
			r, ok := p.Value.(*routev3.Route)
			if !ok {
				continue
			}
			pf, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
			if !ok {
				continue
			}
			m, err := pf.UnmarshalNew()
			if err != nil {
				t.Fatalf("EnvoyFilter %s: %v", name, err)
			}
			if ext := m.(*extauthzv3.ExtAuthzPerRoute).GetCheckSettings().GetContextExtensions(); len(ext) > 0 {
				set[p.Match.GetRouteConfiguration().GetVhost().GetRoute().GetName()] = ext
			}
		}
	}
	if len(set) == 0 {
		t.Fatal("no EnvoyFilter sets context_extensions on a route")
	}
	var cfgText string
	for _, m := range find[*corev1.ConfigMap](c.Rendered[ov], "") {
		if strings.HasPrefix(m.Name, "ext-authz-config") {
			cfgText = m.Data["config.yaml"]
		}
	}
	var pc policyConfig
	if err := yaml.Unmarshal([]byte(cfgText), &pc); err != nil {
		t.Fatal(err)
	}
	read := map[string]bool{}
	for _, rule := range pc.Policy.Rules {
		if rule.RateLimits == nil {
			continue
		}
		for di, d := range rule.RateLimits.Descriptors {
			for route, ext := range set {
				var entries []ratelimit.Entry
				usesContext := false
				for _, a := range d.Actions {
					for kind, args := range a {
						key, _ := args["descriptor_key"].(string)
						switch kind {
						case "context_extension":
							usesContext = true
							name, _ := args["key"].(string)
							read[name] = true
							v, ok := ext[name]
							if !ok {
								t.Errorf("policy rule %s descriptors[%d] reads context extension %q, which route %s does not set", rule.Name, di, name, route)
							}
							if key == "" {
								key = name
							}
							entries = append(entries, ratelimit.Entry{Key: key, Value: v})
						case "identity":
							if key == "" {
								key, _ = args["field"].(string)
							}
							entries = append(entries, ratelimit.Entry{Key: key, Value: "alice"})
						case "generic_key":
							if key == "" {
								key = "generic_key"
							}
							v, _ := args["descriptor_value"].(string)
							entries = append(entries, ratelimit.Entry{Key: key, Value: v})
						case "remote_address":
							entries = append(entries, ratelimit.Entry{Key: "remote_address", Value: "198.51.100.7"})
						default:
							usesContext = false // a descriptor this test cannot build
						}
					}
				}
				if !usesContext {
					continue
				}
				if l := rules.Match(rule.RateLimits.Domain, &ratelimit.Descriptor{Entries: entries}); l == nil {
					t.Errorf("policy rule %s on route %s: descriptor %v in domain %q has no limit", rule.Name, route, entries, rule.RateLimits.Domain)
				}
			}
		}
	}
	for route, ext := range set {
		for k := range ext {
			if !read[k] {
				t.Errorf("route %s sets context extension %q, which no policy rate limit reads", route, k)
			}
		}
	}
}

// emitted is the descriptor Envoy builds from a route's rate_limits actions
// for a request from 198.51.100.7.
func emitted(t *testing.T, rl *routev3.RateLimit) []ratelimit.Entry {
	t.Helper()
	var out []ratelimit.Entry
	for _, a := range rl.GetActions() {
		switch s := a.GetActionSpecifier().(type) {
		case *routev3.RateLimit_Action_GenericKey_:
			key := s.GenericKey.GetDescriptorKey()
			if key == "" {
				key = "generic_key"
			}
			out = append(out, ratelimit.Entry{Key: key, Value: s.GenericKey.GetDescriptorValue()})
		case *routev3.RateLimit_Action_RemoteAddress_:
			out = append(out, ratelimit.Entry{Key: "remote_address", Value: "198.51.100.7"})
		default:
			t.Fatalf("rate_limits action %T: teach the test which descriptor it emits", s)
		}
	}
	return out
}

// serverConfig is the part of the service config the manifests depend on.
type serverConfig struct {
	Server struct {
		GRPCAddress string `json:"grpc_address"`
		HTTPAddress string `json:"http_address"`
		HTTP        struct {
			PathPrefix string `json:"path_prefix"`
		} `json:"http"`
		DrainDelay   string `json:"drain_delay"`
		DrainTimeout string `json:"drain_timeout"`
	} `json:"server"`
	Admin struct {
		Address string `json:"address"`
	} `json:"admin"`
}

func durationOr(t *testing.T, s string, def time.Duration) time.Duration {
	t.Helper()
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

func portOf(t *testing.T, addr, def string) int32 {
	t.Helper()
	if addr == "" {
		addr = def
	}
	_, p, ok := strings.Cut(addr, ":")
	n, err := strconv.Atoi(p)
	if !ok || err != nil {
		t.Fatalf("address %q has no port", addr)
	}
	return int32(n)
}

// TestDeploymentMatchesConfig: the probes, ports and termination timing of
// the Deployment agree with the config it mounts, and that config passes
// `ext-authz check-config` with the files the pod would see.
func TestDeploymentMatchesConfig(t *testing.T) {
	c := mustCorpus(t)
	bin := buildBinary(t)
	devSecrets := find[*corev1.Secret](c.Rendered["deploy/overlays/dev"], "")
	for _, ov := range overlays {
		t.Run(filepath.Base(ov), func(t *testing.T) {
			objs := c.Rendered[ov]
			dep, err := one[*appsv1.Deployment](objs, serviceName)
			if err != nil {
				t.Fatal(err)
			}
			spec := &dep.Spec.Template.Spec
			if len(spec.Containers) != 1 {
				t.Fatalf("want one container, found %d", len(spec.Containers))
			}
			ctr := &spec.Containers[0]
			fsRoot := t.TempDir()
			cfgText := materialize(t, fsRoot, objs, devSecrets, spec, ctr)
			var cfg serverConfig
			if err := yaml.Unmarshal([]byte(cfgText), &cfg); err != nil {
				t.Fatal(err)
			}

			// Ports and probes agree with the config.
			grpcPort := portOf(t, cfg.Server.GRPCAddress, ":8888")
			adminPort := portOf(t, cfg.Admin.Address, ":8081")
			if p, ok := containerPort(ctr, intstr.FromString("grpc")); !ok || p != grpcPort {
				t.Errorf("container port grpc is %d, the config serves gRPC on %d", p, grpcPort)
			}
			if cfg.Server.HTTPAddress != "" {
				if p, ok := containerPort(ctr, intstr.FromString(httpPortName)); !ok || p != portOf(t, cfg.Server.HTTPAddress, "") {
					t.Errorf("container port %s is %d, the config serves HTTP ext_authz on %s", httpPortName, p, cfg.Server.HTTPAddress)
				}
			}
			if p, ok := containerPort(ctr, intstr.FromString("http-admin")); !ok || p != adminPort {
				t.Errorf("container port http-admin is %d, the config serves admin on %d", p, adminPort)
			}
			for kind, pr := range map[string]*corev1.Probe{"liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe, "startup": ctr.StartupProbe} {
				if pr == nil || pr.GRPC == nil || pr.GRPC.Port != grpcPort {
					t.Errorf("%s probe must be a gRPC health probe on port %d", kind, grpcPort)
				}
			}
			if s := ctr.ReadinessProbe.GRPC.Service; s == nil || *s != healthService {
				t.Errorf("readiness probe must ask for the %s health service", healthService)
			}

			// Termination: preStop > drain_delay; the grace period outlasts
			// preStop + drain; the sidecar outlasts the app.
			drainDelay := durationOr(t, cfg.Server.DrainDelay, 5*time.Second)
			drainTimeout := durationOr(t, cfg.Server.DrainTimeout, 15*time.Second)
			pre := ctr.Lifecycle.PreStop
			if pre == nil || pre.Sleep == nil {
				t.Fatal("preStop must be a sleep action (the image has no shell)")
			}
			preStop := time.Duration(pre.Sleep.Seconds) * time.Second
			if preStop <= drainDelay {
				t.Errorf("preStop %v must be longer than server.drain_delay %v", preStop, drainDelay)
			}
			grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
			if grace <= preStop+drainDelay+drainTimeout {
				t.Errorf("terminationGracePeriodSeconds %v must exceed preStop %v + drain_delay %v + drain_timeout %v", grace, preStop, drainDelay, drainTimeout)
			}
			pc, err := proxyConfig(dep.Spec.Template.Annotations["proxy.istio.io/config"])
			if err != nil {
				t.Fatal(err)
			}
			if d := pc.GetTerminationDrainDuration().AsDuration(); d < preStop+drainDelay+drainTimeout || d >= grace {
				t.Errorf("sidecar terminationDrainDuration %v must cover the app's drain (%v) within the grace period (%v)", d, preStop+drainDelay+drainTimeout, grace)
			}

			// STRICT mTLS and the probes: they keep working only while Istio
			// rewrites them to go through the sidecar agent.
			if dep.Spec.Template.Annotations["sidecar.istio.io/rewriteAppHTTPProbers"] == "false" {
				t.Error("probe rewriting is off: the kubelet's probes would fail under STRICT mTLS")
			}

			// Non-root, read-only.
			sc := ctr.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Error("container must have a read-only root file system and no privilege escalation")
			}
			if psc := spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Error("pod must run as non-root")
			}

			// The config passes check-config, seeing the pod's files.
			cfgPath := filepath.Join(fsRoot, "config.yaml")
			if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "check-config", cfgPath)
			cmd.Env = append(os.Environ(), podEnv(t, objs, devSecrets, ctr)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("ext-authz check-config on %s's config: %v\n%s\nconfig:\n%s", ov, err, out, cfgText)
			}
		})
	}
}

// buildBinary builds cmd/ext-authz for check-config.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ext-authz")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ext-authz")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/ext-authz: %v\n%s", err, out)
	}
	return bin
}

// secretData finds a Secret's data in the set, or for the Secrets prod
// expects out of band, in the dev overlay's generated stand-ins.
func secretData(t *testing.T, objs []*object, dev []*corev1.Secret, name string) map[string][]byte {
	t.Helper()
	pick := func(list []*corev1.Secret) map[string][]byte {
		for _, s := range list {
			if s.Name == name || strings.HasPrefix(s.Name, name+"-") && len(s.Name) == len(name)+11 {
				return s.Data
			}
		}
		return nil
	}
	if d := pick(find[*corev1.Secret](objs, "")); d != nil {
		return d
	}
	if !externalSecrets[name] {
		t.Fatalf("Secret %s is referenced but not in the set", name)
	}
	if d := pick(dev); d != nil {
		return d
	}
	if d, ok := standIns[name]; ok {
		return d
	}
	t.Fatalf("Secret %s: no stand-in in the dev overlay or the test", name)
	return nil
}

// standIns stand in for external Secrets that dev does not generate.
var standIns = map[string]map[string][]byte{
	"ext-authz-redis": {"password": []byte("stand-in-for-the-test")},
}

// materialize writes the files the container would see under fsRoot and
// returns its config with the mount paths moved under fsRoot.
func materialize(t *testing.T, fsRoot string, objs []*object, dev []*corev1.Secret, spec *corev1.PodSpec, ctr *corev1.Container) string {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	var configText string
	var found bool
	var pairs []string
	mounts := slices.Clone(ctr.VolumeMounts)
	slices.SortFunc(mounts, func(a, b corev1.VolumeMount) int { return len(b.MountPath) - len(a.MountPath) })
	for _, m := range mounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("volumeMount %s: no such volume", m.Name)
		}
		dir := filepath.Join(fsRoot, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, m.MountPath, dir)
		files := map[string][]byte{}
		switch {
		case v.ConfigMap != nil:
			cm, err := one[*corev1.ConfigMap](objs, v.ConfigMap.Name)
			if err != nil {
				t.Fatalf("volume %s: %v", v.Name, err)
			}
			for k, s := range cm.Data {
				files[k] = []byte(s)
			}
		case v.Secret != nil:
			files = secretData(t, objs, dev, v.Secret.SecretName)
		case v.EmptyDir != nil:
		default:
			t.Fatalf("volume %s: teach the test this volume type", v.Name)
		}
		for k, data := range files {
			if err := os.WriteFile(filepath.Join(dir, k), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, arg := range ctr.Args {
		if strings.HasPrefix(arg, "/") && strings.HasSuffix(arg, ".yaml") {
			for i := 0; i < len(pairs); i += 2 {
				if strings.HasPrefix(arg, pairs[i]+"/") {
					data, err := os.ReadFile(pairs[i+1] + strings.TrimPrefix(arg, pairs[i]))
					if err != nil {
						t.Fatalf("--config %s: %v", arg, err)
					}
					configText, found = string(data), true
				}
			}
		}
	}
	if !found {
		t.Fatalf("args %q: no --config file found in a mounted volume", ctr.Args)
	}
	// Longest mount paths first, one pass: /etc/ext-authz-keys before
	// /etc/ext-authz.
	return strings.NewReplacer(pairs...).Replace(configText)
}

// podEnv resolves the container's environment as the kubelet would.
func podEnv(t *testing.T, objs []*object, dev []*corev1.Secret, ctr *corev1.Container) []string {
	t.Helper()
	var env []string
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			data := secretData(t, objs, dev, ref.Name)
			v, ok := data[ref.Key]
			if !ok && (ref.Optional == nil || !*ref.Optional) {
				t.Fatalf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			env = append(env, e.Name+"="+string(bytes.TrimSpace(v)))
		default:
			t.Fatalf("env %s: teach the test this source", e.Name)
		}
	}
	return env
}

// checkReferences: every ConfigMap and Secret a pod uses is in the set,
// unless the reference is optional or the Secret is one prod expects to be
// created out of band.
func checkReferences(t *testing.T, set string, objs []*object, ps []pod) {
	t.Helper()
	has := func(kind, ns, name string) bool {
		for _, o := range objs {
			if o.GVK.Kind == kind && o.Namespace == ns && o.Name == name {
				return true
			}
		}
		return false
	}
	check := func(p pod, kind, name string, optional *bool) {
		if has(kind, p.Namespace, name) || (optional != nil && *optional) {
			return
		}
		if kind == "Secret" && set == "deploy/overlays/prod" && externalSecrets[name] {
			return
		}
		t.Errorf("%s uses %s %s/%s, which is not in %s", p.Owner, kind, p.Namespace, name, set)
	}
	for _, p := range ps {
		spec := &p.Template.Spec
		for _, v := range spec.Volumes {
			switch {
			case v.ConfigMap != nil:
				check(p, "ConfigMap", v.ConfigMap.Name, v.ConfigMap.Optional)
			case v.Secret != nil:
				check(p, "Secret", v.Secret.SecretName, v.Secret.Optional)
			}
		}
		if spec.ServiceAccountName != "" && !has("ServiceAccount", p.Namespace, spec.ServiceAccountName) {
			t.Errorf("%s uses ServiceAccount %s, which is not in %s", p.Owner, spec.ServiceAccountName, set)
		}
		for _, ctr := range spec.Containers {
			for _, e := range ctr.Env {
				switch {
				case e.ValueFrom == nil:
				case e.ValueFrom.SecretKeyRef != nil:
					check(p, "Secret", e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Optional)
				case e.ValueFrom.ConfigMapKeyRef != nil:
					check(p, "ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name, e.ValueFrom.ConfigMapKeyRef.Optional)
				}
			}
		}
	}
}

// TestDevKeysMatchQuickstart: the dev overlay's published keys are copies
// of the quickstart's (kustomize cannot read files outside its directory),
// so they must not drift.
func TestDevKeysMatchQuickstart(t *testing.T) {
	dir := filepath.Join(root, "deploy/overlays/dev/dev-only-keys")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, e := range entries {
		if e.Name() == "README.md" {
			continue
		}
		n++
		got, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		for _, src := range []string{"examples/quickstart", "examples/quickstart/keys"} {
			if b, err := os.ReadFile(filepath.Join(root, src, e.Name())); err == nil {
				want = b
			}
		}
		if want == nil {
			t.Errorf("%s: no file of that name in examples/quickstart or examples/quickstart/keys", e.Name())
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the quickstart's copy; copy it again", e.Name())
		}
	}
	if n == 0 {
		t.Error("no dev keys")
	}
}
