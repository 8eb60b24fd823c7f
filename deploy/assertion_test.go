package deploy

import (
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	networkingv1alpha3api "istio.io/api/networking/v1alpha3"
	securityv1beta1api "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8snetworkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/server"
)

// The upstream assertion's wiring in the cluster (docs/upstream-assertion.md).
const (
	adminPortName = "http-admin"
	// istiod fetches RequestAuthentication jwksUris; its pods carry
	// app=istiod in istio-system (the IstioOperator installs it).
	istiodNamespace = "istio-system"
)

var istiodLabels = labels.Set{"app": "istiod", "istio": "pilot"}

// assertionConfig is the upstream_assertion section as the ConfigMap holds
// it.
type assertionConfig struct {
	// AlsoRemove is policy.identity_headers.also_remove.
	AlsoRemove []string          `json:"-"`
	Header     string            `json:"header"`
	Issuer     string            `json:"issuer"`
	Audience   string            `json:"audience"`
	Audiences  map[string]string `json:"audiences"`
}

func overlayAssertion(t *testing.T, objs []*object) assertionConfig {
	t.Helper()
	for _, m := range find[*corev1.ConfigMap](objs, "") {
		if strings.HasPrefix(m.Name, "ext-authz-config") {
			var top struct {
				UpstreamAssertion *assertionConfig `json:"upstream_assertion"`
				Policy            struct {
					IdentityHeaders struct {
						AlsoRemove []string `json:"also_remove"`
					} `json:"identity_headers"`
				} `json:"policy"`
			}
			if err := yaml.Unmarshal([]byte(m.Data["config.yaml"]), &top); err != nil {
				t.Fatal(err)
			}
			if top.UpstreamAssertion == nil {
				t.Fatal("the config has no upstream_assertion: the sample's RequestAuthentication would refuse every request")
			}
			a := *top.UpstreamAssertion
			a.AlsoRemove = top.Policy.IdentityHeaders.AlsoRemove
			if a.Header == "" {
				a.Header = generation.DefaultAssertionHeader
			}
			return a
		}
	}
	t.Fatal("no ext-authz-config ConfigMap")
	return assertionConfig{}
}

// audienceFor is the audience the service gives a host (rules name none
// in deploy/).
func (a *assertionConfig) audienceFor(host string) string {
	if aud, ok := a.Audiences[host]; ok {
		return aud
	}
	return a.Audience
}

// upstreamPolicy reports whether an AuthorizationPolicy belongs to an
// upstream in the set (it selects workloads of its own namespace other
// than the gateway), not to the gateway.
func upstreamPolicy(ap *securityv1.AuthorizationPolicy, mesh []*object) bool {
	sel := ap.Spec.GetSelector().GetMatchLabels()
	return ap.Namespace != gatewayNamespace && len(sel) > 0 &&
		len(selects(labels.SelectorFromSet(sel), ap.Namespace, pods(mesh))) > 0
}

// routedHosts returns the hosts the ingress routes to Services that select
// pods of ns matching sel: VirtualService hosts and HTTPRoute hostnames.
func routedHosts(mesh []*object, ns string, sel labels.Selector) []string {
	ps := pods(mesh)
	reaches := func(svcName, svcNS string) bool {
		for _, svc := range find[*corev1.Service](mesh, svcName) {
			if svc.Namespace == svcNS && svcNS == ns && len(selects(labels.SelectorFromSet(svc.Spec.Selector), ns, selects(sel, ns, ps))) > 0 {
				return true
			}
		}
		return false
	}
	var out []string
	for _, vs := range find[*networkingv1.VirtualService](mesh, "") {
		for _, h := range vs.Spec.GetHttp() {
			for _, d := range h.GetRoute() {
				parts := strings.Split(d.GetDestination().GetHost(), ".")
				svcNS := vs.Namespace
				if len(parts) > 1 {
					svcNS = parts[1]
				}
				if reaches(parts[0], svcNS) {
					out = append(out, vs.Spec.GetHosts()...)
				}
			}
		}
	}
	for _, hr := range find[*gatewayv1.HTTPRoute](mesh, "") {
		for _, r := range hr.Spec.Rules {
			for _, b := range r.BackendRefs {
				svcNS := hr.Namespace
				if b.Namespace != nil {
					svcNS = string(*b.Namespace)
				}
				if reaches(string(b.Name), svcNS) {
					for _, h := range hr.Spec.Hostnames {
						out = append(out, string(h))
					}
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestUpstreamAssertionWiring cross-references the chain from ext-authz to
// the sample upstream, in every mesh set and against every overlay's
// config: the RequestAuthentication reads the header the service writes,
// expects its issuer and the audience it gives each host routed to the
// sample, fetches the JWKS from the ext-authz Service's admin port at the
// path the admin server serves, and the AuthorizationPolicy requires a
// principal of that issuer on the same pods; istiod, which fetches the
// JWKS, is admitted to that port by the NetworkPolicy and in plain text by
// the PeerAuthentication.
func TestUpstreamAssertionWiring(t *testing.T) {
	c := mustCorpus(t)
	eachMeshSet(t, c, func(t *testing.T, set string, mesh []*object) {
		ras := find[*securityv1.RequestAuthentication](mesh, "")
		if len(ras) == 0 {
			t.Fatal("no RequestAuthentication: the sample trusts plain headers")
		}
		for _, ov := range overlays {
			objs := c.Rendered[ov]
			cfg := overlayAssertion(t, objs)
			svc, err := one[*corev1.Service](objs, serviceName)
			if err != nil {
				t.Fatal(err)
			}
			admin := servicePort(t, svc, adminPortName)
			dep, err := one[*appsv1.Deployment](objs, serviceName)
			if err != nil {
				t.Fatal(err)
			}
			var ctrPort int32
			for _, ctr := range dep.Spec.Template.Spec.Containers {
				if p, ok := containerPort(&ctr, admin.TargetPort); ok {
					ctrPort = p
				}
			}
			var sc serverConfig
			for _, m := range find[*corev1.ConfigMap](objs, "") {
				if strings.HasPrefix(m.Name, "ext-authz-config") {
					_ = yaml.Unmarshal([]byte(m.Data["config.yaml"]), &sc)
				}
			}
			if want := portOf(t, sc.Admin.Address, ":8081"); ctrPort != want {
				t.Errorf("%s: Service port %s goes to container port %d, the admin server listens on %d", ov, adminPortName, ctrPort, want)
			}
			for _, ra := range ras {
				what := ov + ": RequestAuthentication " + ra.Namespace + "/" + ra.Name
				sel := labels.SelectorFromSet(ra.Spec.GetSelector().GetMatchLabels())
				if len(ra.Spec.GetSelector().GetMatchLabels()) == 0 || len(selects(sel, ra.Namespace, pods(mesh))) == 0 {
					t.Errorf("%s selects no pods", what)
					continue
				}
				rules := ra.Spec.GetJwtRules()
				if len(rules) != 1 {
					t.Errorf("%s: %d jwtRules, want the one for ext-authz", what, len(rules))
					continue
				}
				r := rules[0]
				if r.GetIssuer() != cfg.Issuer {
					t.Errorf("%s: issuer %q, the service signs as %q", what, r.GetIssuer(), cfg.Issuer)
				}
				hosts := routedHosts(mesh, ra.Namespace, sel)
				if len(hosts) == 0 {
					t.Errorf("%s: no route reaches its pods", what)
				}
				for _, h := range hosts {
					if aud := cfg.audienceFor(h); !slices.Contains(r.GetAudiences(), aud) {
						t.Errorf("%s: audiences %v lack %q, the audience the service gives %s", what, r.GetAudiences(), aud, h)
					}
				}
				if len(r.GetAudiences()) == 0 {
					t.Errorf("%s: no audiences: an assertion for any upstream would do", what)
				}
				fh := r.GetFromHeaders()
				if len(fh) != 1 || !strings.EqualFold(fh[0].GetName(), cfg.Header) || fh[0].GetPrefix() != "" {
					t.Errorf("%s: fromHeaders %v, want exactly the bare header %s", what, fh, cfg.Header)
				}
				if len(r.GetFromParams()) > 0 || len(r.GetFromCookies()) > 0 {
					t.Errorf("%s: reads tokens from elsewhere than %s", what, cfg.Header)
				}
				if r.GetForwardOriginalToken() {
					t.Errorf("%s: forwardOriginalToken: the upstream would get a replayable token", what)
				}
				// Envoy's jwt_authn adds a claim header next to any copy
				// the request carries (addCopy), so ext-authz must remove a
				// client's copy before the request gets there.
				for _, ch := range r.GetOutputClaimToHeaders() {
					if !slices.ContainsFunc(cfg.AlsoRemove, func(n string) bool { return strings.EqualFold(n, ch.GetHeader()) }) {
						t.Errorf("%s: outputClaimToHeaders %s is not in policy.identity_headers.also_remove: a client's copy would reach the upstream beside the verified one", what, ch.GetHeader())
					}
				}
				if r.GetOutputPayloadToHeader() != "" && !slices.Contains(cfg.AlsoRemove, r.GetOutputPayloadToHeader()) {
					t.Errorf("%s: outputPayloadToHeader %s is not in policy.identity_headers.also_remove", what, r.GetOutputPayloadToHeader())
				}
				if r.GetJwks() != "" {
					t.Errorf("%s: inline jwks: keys rotate, fetch jwksUri", what)
				}
				u, err := url.Parse(r.GetJwksUri())
				if err != nil {
					t.Errorf("%s: jwksUri: %v", what, err)
					continue
				}
				host, port, _ := net.SplitHostPort(u.Host)
				if u.Scheme != "http" || host != fqdn(svc) || port != strconv.Itoa(int(admin.Port)) || u.Path != server.JWKSPath {
					t.Errorf("%s: jwksUri %s, want http://%s:%d%s (the Service's %s port)", what, u, fqdn(svc), admin.Port, server.JWKSPath, adminPortName)
				}
				// The AuthorizationPolicy requiring it: same pods, ALLOW
				// only principals of the issuer.
				var required bool
				for _, ap := range find[*securityv1.AuthorizationPolicy](mesh, "") {
					if ap.Namespace != ra.Namespace || !labels.Equals(ap.Spec.GetSelector().GetMatchLabels(), ra.Spec.GetSelector().GetMatchLabels()) {
						continue
					}
					if ap.Spec.GetAction() != securityv1beta1api.AuthorizationPolicy_ALLOW || len(ap.Spec.GetRules()) == 0 {
						t.Errorf("%s: AuthorizationPolicy %s must ALLOW only requests with a principal", what, ap.Name)
						continue
					}
					for _, rule := range ap.Spec.GetRules() {
						var ok bool
						for _, f := range rule.GetFrom() {
							ps := f.GetSource().GetRequestPrincipals()
							ok = ok || (len(ps) > 0 && !slices.ContainsFunc(ps, func(p string) bool { return !strings.HasPrefix(p, cfg.Issuer+"/") }))
						}
						if !ok {
							t.Errorf("%s: AuthorizationPolicy %s has a rule that does not require a principal of %s", what, ap.Name, cfg.Issuer)
						}
					}
					required = true
				}
				if !required {
					t.Errorf("%s: no AuthorizationPolicy requires the assertion (a RequestAuthentication alone lets requests without a token through)", what)
				}
			}
			np, err := one[*k8snetworkingv1.NetworkPolicy](objs, serviceName)
			if err != nil {
				t.Fatal(err)
			}
			if !admits(np, labels.Set{"kubernetes.io/metadata.name": istiodNamespace}, istiodLabels, admin.TargetPort, int(ctrPort)) {
				t.Errorf("%s: NetworkPolicy %s does not admit istiod to the admin port: it cannot fetch the JWKS", ov, np.Name)
			}
			if admits(np, labels.Set{"kubernetes.io/metadata.name": "sample"}, labels.Set{"app": "helloworld"}, admin.TargetPort, int(ctrPort)) {
				t.Errorf("%s: NetworkPolicy %s admits the sample to the admin port", ov, np.Name)
			}
			checkAdminPeerAuthentication(t, ov, mesh, dep, ctrPort)
		}
	})
}

// TestHTTPProvidersForwardTheAssertion: Envoy's HTTP ext_authz sets only
// the authorizer's headers its allow list names upstream; the Istio
// provider and the EnvoyFilter variant must both name the assertion
// header, or every request through them is refused by the sample, and the
// cookie header, or a stripped cookie reaches the upstream.
func TestHTTPProvidersForwardTheAssertion(t *testing.T) {
	c := mustCorpus(t)
	iop := theIstioOperator(t, c)
	for _, ov := range overlays {
		cfg := overlayAssertion(t, c.Rendered[ov])
		var providers int
		for _, p := range iop.Mesh.GetExtensionProviders() {
			h := p.GetEnvoyExtAuthzHttp()
			if h == nil {
				continue
			}
			providers++
			for _, need := range []string{cfg.Header, "cookie"} {
				if !slices.ContainsFunc(h.GetHeadersToUpstreamOnAllow(), func(pat string) bool { return istioHeaderMatch(pat, need) }) {
					t.Errorf("%s: extension provider %s: headersToUpstreamOnAllow %v does not forward %s", ov, p.GetName(), h.GetHeadersToUpstreamOnAllow(), need)
				}
			}
		}
		if providers == 0 {
			t.Fatal("no envoyExtAuthzHttp provider")
		}
		eachMeshSet(t, c, func(t *testing.T, _ string, mesh []*object) {
			for name, ef := range envoyFilters(t, mesh) {
				for _, p := range ef.Patches {
					if p.ApplyTo != networkingv1alpha3api.EnvoyFilter_HTTP_FILTER || p.Value == nil {
						continue
					}
					_, f := httpFilter(t, p)
					ea, ok := f.(*extauthzv3.ExtAuthz)
					if !ok || ea.GetHttpService() == nil {
						continue
					}
					for _, need := range []string{cfg.Header, "cookie"} {
						var ok2 bool
						for _, m := range ea.GetHttpService().GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns() {
							ok2 = ok2 || m.GetExact() == need || (m.GetPrefix() != "" && strings.HasPrefix(need, m.GetPrefix()))
						}
						if !ok2 {
							t.Errorf("%s: EnvoyFilter %s: allowed_upstream_headers does not forward %s", ov, name, need)
						}
					}
				}
			}
		})
	}
}

// istioHeaderMatch is Istio's header pattern: exact, "prefix*" or
// "*suffix", case-insensitive.
func istioHeaderMatch(pattern, name string) bool {
	pattern, name = strings.ToLower(pattern), strings.ToLower(name)
	switch {
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(name, strings.TrimSuffix(pattern, "*"))
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(name, strings.TrimPrefix(pattern, "*"))
	}
	return pattern == name
}

// checkAdminPeerAuthentication: a PeerAuthentication of the ext-authz
// namespace selects the ext-authz pods and lets plain text (istiod has no
// sidecar) into the admin port, and only that port.
func checkAdminPeerAuthentication(t *testing.T, ov string, mesh []*object, dep *appsv1.Deployment, adminPort int32) {
	t.Helper()
	var found bool
	for _, pa := range find[*securityv1.PeerAuthentication](mesh, "") {
		if pa.Namespace != serviceNamespace || len(pa.Spec.GetSelector().GetMatchLabels()) == 0 {
			continue
		}
		if !labels.SelectorFromSet(pa.Spec.GetSelector().GetMatchLabels()).Matches(labels.Set(dep.Spec.Template.Labels)) {
			t.Errorf("%s: PeerAuthentication %s does not select the ext-authz pods", ov, pa.Name)
			continue
		}
		if pa.Spec.GetMtls() != nil {
			t.Errorf("%s: PeerAuthentication %s sets the workload's mode: it would override the namespace's (STRICT, or PERMISSIVE while migrating)", ov, pa.Name)
		}
		for port, m := range pa.Spec.GetPortLevelMtls() {
			if port != uint32(adminPort) {
				t.Errorf("%s: PeerAuthentication %s relaxes port %d, not only the admin port %d", ov, pa.Name, port, adminPort)
			}
			if m.GetMode() == securityv1beta1api.PeerAuthentication_MutualTLS_PERMISSIVE && port == uint32(adminPort) {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("%s: no PeerAuthentication lets istiod (no sidecar) fetch the JWKS from admin port %d in plain text", ov, adminPort)
	}
}
