package deploy

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3api "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const (
	hcmName = "envoy.filters.network.http_connection_manager"
	// rejectFragment is the Envoy runtime guard that answers 400 to a
	// :path with a #fragment; Istio's bootstrap sets it to false.
	rejectFragment = "envoy.reloadable_features.http_reject_path_with_fragment"
)

// TestPathNormalizationMatchesTheService: the mesh config states the path
// normalisation whose output the service's canonicaliser agrees with
// (istio-operator.yaml says why), instead of inheriting Istio's default.
func TestPathNormalizationMatchesTheService(t *testing.T) {
	c := mustCorpus(t)
	iop := theIstioOperator(t, c)
	var raw struct {
		PathNormalization *struct {
			Normalization string `json:"normalization"`
		} `json:"pathNormalization"`
	}
	if err := json.Unmarshal(iop.Spec.MeshConfig, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.PathNormalization == nil || raw.PathNormalization.Normalization == "" {
		t.Fatal("meshConfig.pathNormalization.normalization is not set: Istio's default (BASE) does not merge slashes")
	}
	if got, want := iop.Mesh.GetPathNormalization().GetNormalization(), meshv1alpha1.MeshConfig_ProxyPathNormalization_MERGE_SLASHES; got != want {
		t.Errorf("meshConfig.pathNormalization.normalization is %s, want %s", got, want)
	}
}

// istioGatewayHCM is the part of the HTTP connection manager that istiod
// builds for a gateway listener which the mesh config decides, as
// buildHTTPConnectionManager in istio.io/istio
// pilot/pkg/networking/core/listener_builder.go does in Istio 1.30 and
// 1.31: escaped slashes kept, path normalisation from
// meshConfig.pathNormalization. The rest is the minimum of a valid HCM.
func istioGatewayHCM(mesh *meshv1alpha1.MeshConfig) *hcmv3.HttpConnectionManager {
	h := &hcmv3.HttpConnectionManager{
		StatPrefix: "outbound_0.0.0.0_8443",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: "https.443.https.public.istio-ingress",
			ConfigSource: &corev3.ConfigSource{
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
		}},
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_KEEP_UNCHANGED,
	}
	switch mesh.GetPathNormalization().GetNormalization() {
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_NONE:
		h.NormalizePath = wrapperspb.Bool(false)
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_BASE, meshv1alpha1.MeshConfig_ProxyPathNormalization_DEFAULT:
		h.NormalizePath = wrapperspb.Bool(true)
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_MERGE_SLASHES:
		h.NormalizePath = wrapperspb.Bool(true)
		h.MergeSlashes = true
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES:
		h.NormalizePath = wrapperspb.Bool(true)
		h.MergeSlashes = true
		h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	}
	return h
}

// gatewayHCM renders the gateway's HTTP connection manager: Istio's, with
// every EnvoyFilter patch on it applied in priority order the way istiod
// applies a NETWORK_FILTER MERGE (util.MergeAnyWithAny: both typed configs
// unpacked, proto.Merge).
func gatewayHCM(t *testing.T, mesh *meshv1alpha1.MeshConfig, efs map[string]*envoyFilter) (*hcmv3.HttpConnectionManager, int) {
	t.Helper()
	h := istioGatewayHCM(mesh)
	names := slices.Sorted(maps.Keys(efs))
	slices.SortStableFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(efs[a].Spec.GetPriority(), efs[b].Spec.GetPriority()), cmp.Compare(a, b))
	})
	var applied int
	for _, name := range names {
		for i, p := range efs[name].Patches {
			if p.ApplyTo != networkingv1alpha3api.EnvoyFilter_NETWORK_FILTER ||
				p.Match.GetListener().GetFilterChain().GetFilter().GetName() != hcmName {
				continue
			}
			if ctx := p.Match.GetContext(); ctx != networkingv1alpha3api.EnvoyFilter_GATEWAY && ctx != networkingv1alpha3api.EnvoyFilter_ANY {
				continue
			}
			at := fmt.Sprintf("EnvoyFilter %s configPatches[%d]", name, i)
			if p.Operation != networkingv1alpha3api.EnvoyFilter_Patch_MERGE {
				t.Errorf("%s: %s on the HTTP connection manager; only MERGE keeps what istiod generates (routes, normalisation, filters)", at, p.Operation)
				continue
			}
			f, ok := p.Value.(*listenerv3.Filter)
			if !ok {
				t.Fatalf("%s: value is %T", at, p.Value)
			}
			if f.GetTypedConfig() == nil {
				t.Errorf("%s: no typed_config; istiod skips such a MERGE", at)
				continue
			}
			user, err := f.GetTypedConfig().UnmarshalNew()
			if err != nil {
				t.Fatalf("%s: %v", at, err)
			}
			uh, ok := user.(*hcmv3.HttpConnectionManager)
			if !ok {
				t.Fatalf("%s: typed_config is %T, not the HTTP connection manager", at, user)
			}
			proto.Merge(h, uh)
			applied++
		}
	}
	return h, applied
}

// TestGatewayHCMRejectsWhatItCannotJudge renders the gateway's HTTP
// connection manager in every mesh install and checks the settings that
// keep ext-authz's view of a request and the upstream's the same.
func TestGatewayHCMRejectsWhatItCannotJudge(t *testing.T) {
	c := mustCorpus(t)
	iop := theIstioOperator(t, c)
	eachMeshSet(t, c, func(t *testing.T, _ string, mesh []*object) {
		h, applied := gatewayHCM(t, iop.Mesh, envoyFilters(t, mesh))
		if applied == 0 {
			t.Fatal("no EnvoyFilter patches the gateway's HTTP connection manager")
		}
		if err := h.ValidateAll(); err != nil {
			t.Errorf("the rendered HTTP connection manager is invalid: %v", err)
		}
		// x_auth_subject must not pass next to the x-auth-subject ext-authz
		// sets: upstreams that fold _ and - would read the client's.
		if got := h.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); got != corev3.HttpProtocolOptions_REJECT_REQUEST {
			t.Errorf("headers_with_underscores_action is %s, want REJECT_REQUEST", got)
		}
		// The path filters and upstream see is the normalised one, with
		// repeated slashes merged, as the service's canonicaliser does.
		if !h.GetNormalizePath().GetValue() {
			t.Error("normalize_path is off: ext_authz and the upstream would see paths with dot segments")
		}
		if !h.GetMergeSlashes() {
			t.Error("merge_slashes is off: //admin reaches the upstream unmerged while the service judges /admin")
		}
		// %2F and %5C reach the service as sent, so its
		// allow_encoded_slashes decides; decoding them at the gateway would
		// change where the upstream splits the path.
		if got := h.GetPathWithEscapedSlashesAction(); got != hcmv3.HttpConnectionManager_KEEP_UNCHANGED {
			t.Errorf("path_with_escaped_slashes_action is %s, want KEEP_UNCHANGED", got)
		}
	})
}

// TestIstioGatewayHCMModel pins the model of what istiod generates, so a
// change to the mapping is deliberate: each normalisation mode yields the
// fields listener_builder.go sets for it.
func TestIstioGatewayHCMModel(t *testing.T) {
	type want struct {
		normalize, merge bool
		escaped          hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
	}
	tests := []struct {
		give meshv1alpha1.MeshConfig_ProxyPathNormalization_NormalizationType
		want want
	}{
		{give: meshv1alpha1.MeshConfig_ProxyPathNormalization_DEFAULT, want: want{normalize: true, escaped: hcmv3.HttpConnectionManager_KEEP_UNCHANGED}},
		{give: meshv1alpha1.MeshConfig_ProxyPathNormalization_NONE, want: want{escaped: hcmv3.HttpConnectionManager_KEEP_UNCHANGED}},
		{give: meshv1alpha1.MeshConfig_ProxyPathNormalization_BASE, want: want{normalize: true, escaped: hcmv3.HttpConnectionManager_KEEP_UNCHANGED}},
		{give: meshv1alpha1.MeshConfig_ProxyPathNormalization_MERGE_SLASHES, want: want{normalize: true, merge: true, escaped: hcmv3.HttpConnectionManager_KEEP_UNCHANGED}},
		{give: meshv1alpha1.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES, want: want{normalize: true, merge: true, escaped: hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD}},
	}
	for _, tt := range tests {
		t.Run(tt.give.String(), func(t *testing.T) {
			h := istioGatewayHCM(&meshv1alpha1.MeshConfig{PathNormalization: &meshv1alpha1.MeshConfig_ProxyPathNormalization{Normalization: tt.give}})
			got := want{normalize: h.GetNormalizePath().GetValue(), merge: h.GetMergeSlashes(), escaped: h.GetPathWithEscapedSlashesAction()}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if err := h.ValidateAll(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestGatewayRejectsFragments: every gateway rejects a #fragment in :path
// before any filter, instead of Istio's strip (the DaemonSet's ProxyConfig
// sets the Envoy runtime guard Istio's bootstrap turns off).
func TestGatewayRejectsFragments(t *testing.T) {
	c := mustCorpus(t)
	iop := theIstioOperator(t, c)
	if v, ok := iop.Mesh.GetDefaultConfig().GetRuntimeValues()[rejectFragment]; ok && v != "true" {
		t.Errorf("meshConfig.defaultConfig.runtimeValues sets %s to %q", rejectFragment, v)
	}
	eachMeshSet(t, c, func(t *testing.T, _ string, mesh []*object) {
		ds, err := one[*appsv1.DaemonSet](mesh, "istio-ingressgateway")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := proxyConfig(ds.Spec.Template.Annotations["proxy.istio.io/config"])
		if err != nil {
			t.Fatalf("gateway proxy.istio.io/config: %v", err)
		}
		if got := pc.GetRuntimeValues()[rejectFragment]; got != "true" {
			t.Errorf("gateway ProxyConfig runtimeValues[%s] = %q, want \"true\" (Istio strips fragments otherwise)", rejectFragment, got)
		}
		for _, ctr := range ds.Spec.Template.Spec.Containers {
			for _, e := range ctr.Env {
				if e.Name == "HTTP_STRIP_FRAGMENT_FROM_PATH_UNSAFE_IF_DISABLED" {
					t.Errorf("container %s sets %s: fragments must be rejected, not kept or stripped", ctr.Name, e.Name)
				}
			}
		}
	})
}

// TestGatewayAPIVariant cross-references the Gateway API objects: the
// Gateway binds the DaemonSet gateway by manual deployment, its listeners
// are the gateway Service's ports, every HTTPRoute attaches to a listener
// that admits it and sends traffic to Services that exist, and nothing of
// the Istio Gateway API is left selecting the same pods.
func TestGatewayAPIVariant(t *testing.T) {
	c := mustCorpus(t)
	mesh := meshObjects(c, "gateway-api")
	gws := find[*gatewayv1.Gateway](mesh, "")
	if len(gws) == 0 {
		t.Fatal("no Gateway API Gateway in the gateway-api set")
	}
	ds, err := one[*appsv1.DaemonSet](mesh, "istio-ingressgateway")
	if err != nil {
		t.Fatal(err)
	}
	gwSvc, err := one[*corev1.Service](mesh, "istio-ingressgateway")
	if err != nil {
		t.Fatal(err)
	}
	podLabels := labels.Set(ds.Spec.Template.Labels)
	for _, g := range find[*networkingv1.Gateway](mesh, "") {
		if labels.SelectorFromSet(g.Spec.GetSelector()).Matches(podLabels) {
			t.Errorf("Istio Gateway %s also configures the Gateway API gateway's pods", g.Name)
		}
	}
	servicePorts := map[int32]bool{}
	for _, p := range gwSvc.Spec.Ports {
		servicePorts[p.Port] = true
	}
	for _, g := range gws {
		what := "Gateway " + g.Namespace + "/" + g.Name
		if g.Spec.GatewayClassName != "istio" {
			t.Errorf("%s: gatewayClassName %q, want istio", what, g.Spec.GatewayClassName)
		}
		// Manual deployment: one Hostname address, the existing Service.
		if len(g.Spec.Addresses) != 1 || g.Spec.Addresses[0].Type == nil || *g.Spec.Addresses[0].Type != gatewayv1.HostnameAddressType ||
			g.Spec.Addresses[0].Value != fqdn(gwSvc) {
			var got []string
			for _, a := range g.Spec.Addresses {
				got = append(got, string(deref(a.Type, ""))+"="+a.Value)
			}
			t.Errorf("%s: addresses %v, want the one Hostname %s (manual deployment; without it istiod deploys a gateway of its own)", what, got, fqdn(gwSvc))
		}
		if g.Namespace != gwSvc.Namespace {
			t.Errorf("%s is not in the gateway Service's namespace %s", what, gwSvc.Namespace)
		}
		if podLabels[gatewayNameLabel] != g.Name {
			t.Errorf("%s: the gateway pods carry %s=%q; targetRefs policies would not reach them", what, gatewayNameLabel, podLabels[gatewayNameLabel])
		}
		for _, l := range g.Spec.Listeners {
			if !servicePorts[l.Port] {
				t.Errorf("%s listener %s: port %d is not a gateway Service port", what, l.Name, l.Port)
			}
			if l.Protocol == gatewayv1.HTTPSProtocolType {
				if l.TLS == nil || l.TLS.Mode == nil || *l.TLS.Mode != gatewayv1.TLSModeTerminate || len(l.TLS.CertificateRefs) == 0 {
					t.Errorf("%s listener %s: HTTPS needs tls.mode Terminate with certificateRefs", what, l.Name)
					continue
				}
				for _, ref := range l.TLS.CertificateRefs {
					if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Secret") ||
						(ref.Namespace != nil && string(*ref.Namespace) != g.Namespace) {
						t.Errorf("%s listener %s: certificateRef %v must be a Secret in %s (no ReferenceGrant is shipped)", what, l.Name, ref, g.Namespace)
					}
				}
			}
		}
	}

	attached := map[string]int{} // gateway/listener -> routes
	for _, hr := range find[*gatewayv1.HTTPRoute](mesh, "") {
		what := "HTTPRoute " + hr.Namespace + "/" + hr.Name
		if len(hr.Spec.ParentRefs) == 0 {
			t.Errorf("%s has no parentRefs", what)
		}
		for _, pr := range hr.Spec.ParentRefs {
			l, g := listenerFor(gws, hr.Namespace, pr)
			if l == nil {
				t.Errorf("%s: parentRef %s/%s section %v names no listener of a Gateway in the set", what, deref(pr.Namespace, gatewayv1.Namespace(hr.Namespace)), pr.Name, deref(pr.SectionName, ""))
				continue
			}
			attached[g.Name+"/"+string(l.Name)]++
			if !admitsRoute(l, g.Namespace, namespaceLabels(mesh, hr.Namespace), hr.Namespace) {
				t.Errorf("%s: listener %s of Gateway %s does not admit routes from namespace %s", what, l.Name, g.Name, hr.Namespace)
			}
			if l.Hostname != nil && !slices.Contains(hr.Spec.Hostnames, *l.Hostname) {
				t.Errorf("%s: hostnames %v do not include listener %s's %s", what, hr.Spec.Hostnames, l.Name, *l.Hostname)
			}
		}
		for i, r := range hr.Spec.Rules {
			if r.Name == nil {
				t.Errorf("%s rules[%d]: name it; EnvoyFilters match Istio's routes by the rule's name", what, i)
			}
			for _, br := range r.BackendRefs {
				if (br.Group != nil && *br.Group != "") || (br.Kind != nil && *br.Kind != "Service") || (br.Namespace != nil && string(*br.Namespace) != hr.Namespace) {
					t.Errorf("%s rules[%d]: backendRef %s must be a Service in %s", what, i, br.Name, hr.Namespace)
					continue
				}
				svc := serviceIn(mesh, hr.Namespace, string(br.Name))
				if svc == nil {
					t.Errorf("%s rules[%d]: backendRef Service %s/%s is not in the set", what, i, hr.Namespace, br.Name)
					continue
				}
				if br.Port == nil || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == *br.Port }) {
					t.Errorf("%s rules[%d]: backendRef %s port %d is not a port of the Service", what, i, br.Name, deref(br.Port, 0))
				}
			}
		}
	}
	for _, g := range gws {
		for _, l := range g.Spec.Listeners {
			if attached[g.Name+"/"+string(l.Name)] == 0 {
				t.Errorf("Gateway %s listener %s: no HTTPRoute attaches to it", g.Name, l.Name)
			}
		}
	}
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func serviceIn(objs []*object, ns, name string) *corev1.Service {
	for _, s := range find[*corev1.Service](objs, name) {
		if s.Namespace == ns {
			return s
		}
	}
	return nil
}

// listenerFor resolves a parentRef of a route in namespace routeNS.
func listenerFor(gws []*gatewayv1.Gateway, routeNS string, pr gatewayv1.ParentReference) (*gatewayv1.Listener, *gatewayv1.Gateway) {
	if deref(pr.Group, gatewayv1.GroupName) != gatewayv1.GroupName || deref(pr.Kind, "Gateway") != "Gateway" {
		return nil, nil
	}
	ns := string(deref(pr.Namespace, gatewayv1.Namespace(routeNS)))
	for _, g := range gws {
		if g.Name != string(pr.Name) || g.Namespace != ns {
			continue
		}
		for i := range g.Spec.Listeners {
			l := &g.Spec.Listeners[i]
			if pr.SectionName == nil || *pr.SectionName == l.Name {
				if pr.Port == nil || *pr.Port == l.Port {
					return l, g
				}
			}
		}
	}
	return nil, nil
}

// admitsRoute applies a listener's allowedRoutes.namespaces to a route's
// namespace (Gateway API: the default is Same).
func admitsRoute(l *gatewayv1.Listener, gwNS string, routeNSLabels labels.Set, routeNS string) bool {
	from := gatewayv1.NamespacesFromSame
	var sel *gatewayv1.RouteNamespaces
	if l.AllowedRoutes != nil && l.AllowedRoutes.Namespaces != nil {
		sel = l.AllowedRoutes.Namespaces
		if sel.From != nil {
			from = *sel.From
		}
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSame:
		return routeNS == gwNS
	case gatewayv1.NamespacesFromSelector:
		if sel == nil || sel.Selector == nil {
			return false
		}
		s, err := labelSelector(sel.Selector)
		return err == nil && s.Matches(routeNSLabels)
	}
	return false
}

// TestMeshSetsCoverEveryKustomization: every kustomization under
// deploy/mesh and envoyfilters is part of a mesh install the tests check,
// directly or through one that includes it, so a new variant cannot ship
// unchecked.
func TestMeshSetsCoverEveryKustomization(t *testing.T) {
	c := mustCorpus(t)
	type key struct{ kind, ns, name string }
	covered := map[key]bool{}
	listed := map[string]bool{}
	for set, dirs := range meshSets {
		for _, d := range dirs {
			listed[d] = true
		}
		for _, o := range meshObjects(c, set) {
			covered[key{o.GVK.Kind, o.Namespace, o.Name}] = true
		}
	}
	var dirs int
	for dir, objs := range c.Rendered {
		if !strings.HasPrefix(dir, "deploy/mesh/") && dir != "envoyfilters" && !strings.HasPrefix(dir, "envoyfilters/") {
			continue
		}
		dirs++
		if listed[dir] {
			continue
		}
		for _, o := range objs {
			if !covered[key{o.GVK.Kind, o.Namespace, o.Name}] {
				t.Errorf("kustomization %s: %s %s/%s is in no mesh set (crossref_test.go meshSets)", dir, o.GVK.Kind, o.Namespace, o.Name)
			}
		}
	}
	if dirs < len(listed) {
		t.Errorf("found %d mesh kustomizations, fewer than the %d the mesh sets list", dirs, len(listed))
	}
}
