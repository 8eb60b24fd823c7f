package deploy

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8snetworkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	alertsFile    = "deploy/observability/alerts.yml"
	dashboardFile = "deploy/observability/grafana-dashboard.json"
	rulesCM       = "ext-authz-prometheus-rules"
	dashboardCM   = "ext-authz-grafana-dashboard"
)

// loadAlerts decodes the plain rule file strictly into the Prometheus
// Operator's rule-group types, which have the rule file's schema.
func loadAlerts(t *testing.T) (monitoringv1.PrometheusRuleSpec, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	var spec monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(data, &spec); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	if len(spec.Groups) == 0 {
		t.Fatalf("%s: no rule groups", alertsFile)
	}
	return spec, data
}

var metricRE = regexp.MustCompile(`\bext_authz_[a-z0-9_]+`)

// TestAlertsAreOneSetForBothInstalls: the Operator's PrometheusRule and the
// addon Prometheus's rule file are the same alerts, each alert queries an
// ext-authz metric (internal/server's TestMetricsEndToEnd requires every
// ext_authz_* name in deploy/observability to be exported), and the
// addon path ships the file byte for byte.
func TestAlertsAreOneSetForBothInstalls(t *testing.T) {
	c := mustCorpus(t)
	spec, data := loadAlerts(t)
	alerts := 0
	for _, g := range spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if expr := r.Expr.String(); !metricRE.MatchString(expr) {
				t.Errorf("alert %s: expression %q names no ext_authz_ metric", r.Alert, expr)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s: no summary annotation", r.Alert)
			}
		}
	}
	if alerts < 5 {
		t.Fatalf("%s: only %d alerts", alertsFile, alerts)
	}

	op := c.Rendered["deploy/observability-operator"]
	pr, err := one[*monitoringv1.PrometheusRule](op, "ext-authz")
	if err != nil {
		t.Fatalf("deploy/observability-operator: %v", err)
	}
	if !reflect.DeepEqual(pr.Spec, spec) {
		a, _ := json.MarshalIndent(pr.Spec, "", " ")
		b, _ := json.MarshalIndent(spec, "", " ")
		t.Errorf("PrometheusRule spec and %s differ:\n%s\nvs\n%s", alertsFile, a, b)
	}
	if cms := find[*corev1.ConfigMap](op, rulesCM); len(cms) != 0 {
		t.Errorf("the Operator install also ships the plain rule file ConfigMap")
	}

	addons := c.Rendered["deploy/mesh/addons"]
	cm, err := one[*corev1.ConfigMap](addons, rulesCM)
	if err != nil {
		t.Fatalf("deploy/mesh/addons: %v", err)
	}
	var key string
	for k, v := range cm.Data {
		key = k
		if v != string(data) {
			t.Errorf("ConfigMap %s key %s is not %s", rulesCM, k, alertsFile)
		}
	}
	if len(cm.Data) != 1 {
		t.Fatalf("ConfigMap %s has %d keys, want 1", rulesCM, len(cm.Data))
	}

	// The addon Prometheus mounts it where its rule_files glob looks.
	prom, err := one[*appsv1.Deployment](addons, "prometheus")
	if err != nil {
		t.Fatal(err)
	}
	mount := mountOf(t, prom, rulesCM)
	promCfg := configMapFile(t, addons, prom, "/etc/prometheus/", "prometheus.yml")
	var cfg struct {
		RuleFiles []string `json:"rule_files"`
	}
	if err := yaml.Unmarshal([]byte(promCfg), &cfg); err != nil {
		t.Fatal(err)
	}
	loaded := false
	for _, g := range cfg.RuleFiles {
		if ok, _ := path.Match(g, path.Join(mount, key)); ok {
			loaded = true
		}
	}
	if !loaded {
		t.Errorf("prometheus.yml rule_files %v do not match %s, where the alerts are mounted", cfg.RuleFiles, path.Join(mount, key))
	}
}

// mountOf returns where the workload's first container mounts the
// ConfigMap named cm.
func mountOf(t *testing.T, d *appsv1.Deployment, cm string) string {
	t.Helper()
	spec := d.Spec.Template.Spec
	for _, v := range spec.Volumes {
		if v.ConfigMap == nil || v.ConfigMap.Name != cm {
			continue
		}
		for _, m := range spec.Containers[0].VolumeMounts {
			if m.Name == v.Name {
				return m.MountPath
			}
		}
	}
	t.Fatalf("%s does not mount ConfigMap %s", d.Name, cm)
	return ""
}

// configMapFile returns the content of file in the ConfigMap the workload
// mounts at dir.
func configMapFile(t *testing.T, objs []*object, d *appsv1.Deployment, dir, file string) string {
	t.Helper()
	spec := d.Spec.Template.Spec
	for _, m := range spec.Containers[0].VolumeMounts {
		if strings.TrimSuffix(m.MountPath, "/")+"/" != dir {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cm, err := one[*corev1.ConfigMap](objs, v.ConfigMap.Name)
				if err != nil {
					t.Fatal(err)
				}
				if s, ok := cm.Data[file]; ok {
					return s
				}
			}
		}
	}
	t.Fatalf("%s mounts no ConfigMap with %s at %s", d.Name, file, dir)
	return ""
}

// TestDashboardLoadsInBothInstalls: the addon Grafana (no sidecar) gets the
// dashboard through a file provider that reads where the ConfigMap is
// mounted, with a Prometheus data source the dashboard can pick; the
// Operator install labels the ConfigMap for a Grafana dashboard sidecar.
func TestDashboardLoadsInBothInstalls(t *testing.T) {
	c := mustCorpus(t)
	want, err := os.ReadFile(filepath.Join(root, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(want, &dash); err != nil {
		t.Fatal(err)
	}
	dsVar := false
	for _, v := range dash.Templating.List {
		if v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = true
		}
	}
	if !dsVar {
		t.Errorf("%s: no datasource variable of type prometheus; a fixed data source uid would break on other Grafanas", dashboardFile)
	}

	addons := c.Rendered["deploy/mesh/addons"]
	cm, err := one[*corev1.ConfigMap](addons, dashboardCM)
	if err != nil {
		t.Fatalf("deploy/mesh/addons: %v", err)
	}
	if len(cm.Data) != 1 || cm.Data[filepath.Base(dashboardFile)] != string(want) {
		t.Errorf("ConfigMap %s does not hold %s", dashboardCM, dashboardFile)
	}
	graf, err := one[*appsv1.Deployment](addons, "grafana")
	if err != nil {
		t.Fatal(err)
	}
	mount := mountOf(t, graf, dashboardCM)
	var providers struct {
		Providers []struct {
			Type    string `json:"type"`
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	if err := yaml.Unmarshal([]byte(configMapFile(t, addons, graf, "/etc/grafana/provisioning/dashboards/", "dashboards.yaml")), &providers); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(providers.Providers, func(p struct {
		Type    string `json:"type"`
		Options struct {
			Path string `json:"path"`
		} `json:"options"`
	}) bool {
		return p.Type == "file" && strings.TrimSuffix(p.Options.Path, "/") == mount
	}) {
		t.Errorf("no Grafana file provider reads %s, where the dashboard is mounted", mount)
	}
	var ds struct {
		Datasources []struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"datasources"`
	}
	if err := yaml.Unmarshal([]byte(configMapFile(t, addons, graf, "/etc/grafana/provisioning/datasources/", "datasources.yaml")), &ds); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ds.Datasources, func(d struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	}) bool {
		return d.Type == "prometheus" && strings.Contains(d.URL, "//prometheus.istio-system.svc:")
	}) {
		t.Error("the addon Grafana has no data source for the addon Prometheus")
	}

	op := c.Rendered["deploy/observability-operator"]
	ocm, err := one[*corev1.ConfigMap](op, dashboardCM)
	if err != nil {
		t.Fatalf("deploy/observability-operator: %v", err)
	}
	if ocm.Labels["grafana_dashboard"] != "1" || ocm.Data[filepath.Base(dashboardFile)] != string(want) {
		t.Errorf("Operator install: dashboard ConfigMap labels %v, or content not %s", ocm.Labels, dashboardFile)
	}
}

// TestPodMonitorScrapesExtAuthz: the Operator's PodMonitor selects the
// ext-authz pods, names a port they have, keeps the same annotations the
// addon Prometheus uses, and the NetworkPolicy lets such a Prometheus in.
func TestPodMonitorScrapesExtAuthz(t *testing.T) {
	c := mustCorpus(t)
	op := c.Rendered["deploy/observability-operator"]
	pm, err := one[*monitoringv1.PodMonitor](op, "ext-authz")
	if err != nil {
		t.Fatal(err)
	}
	for _, ov := range []string{"deploy/overlays/dev", "deploy/overlays/prod"} {
		objs := c.Rendered[ov]
		d, err := one[*appsv1.Deployment](objs, serviceName)
		if err != nil {
			t.Fatalf("%s: %v", ov, err)
		}
		if d.Namespace != pm.Namespace {
			t.Errorf("%s: ext-authz runs in %s, the PodMonitor is in %s (no namespaceSelector)", ov, d.Namespace, pm.Namespace)
		}
		tmpl := d.Spec.Template
		sel, err := labelSelector(&pm.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		if !sel.Matches(labels.Set(tmpl.Labels)) {
			t.Errorf("%s: PodMonitor selector %v does not match pod labels %v", ov, pm.Spec.Selector, tmpl.Labels)
		}
		a := tmpl.Annotations
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] == "" {
			t.Errorf("%s: pod annotations %v do not ask to be scraped", ov, a)
		}
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port == nil {
				t.Errorf("PodMonitor endpoint without a port name: one target per container port")
				continue
			}
			var port int32
			for _, p := range tmpl.Spec.Containers[0].Ports {
				if p.Name == *ep.Port {
					port = p.ContainerPort
				}
			}
			if port == 0 {
				t.Errorf("%s: PodMonitor port %q is not a port of the ext-authz container", ov, *ep.Port)
			}
			if want := intstr.FromInt32(port); a["prometheus.io/port"] != want.String() {
				t.Errorf("%s: annotated metrics port %s is not the PodMonitor's port %s (%d)", ov, a["prometheus.io/port"], *ep.Port, port)
			}
		}
		np, err := one[*k8snetworkingv1.NetworkPolicy](op, "ext-authz-operator-prometheus")
		if err != nil {
			t.Fatal(err)
		}
		promNS := labels.Set{"kubernetes.io/metadata.name": "monitoring"}
		promPod := labels.Set{"app.kubernetes.io/name": "prometheus"}
		for _, p := range []int{8081, 15020} {
			if !admits(np, promNS, promPod, intstr.FromInt(p), p) {
				t.Errorf("NetworkPolicy %s does not admit the Operator's Prometheus to %d", np.Name, p)
			}
		}
		if admits(np, promNS, labels.Set{"app": "other"}, intstr.FromInt(8081), 8081) {
			t.Errorf("NetworkPolicy %s admits arbitrary pods", np.Name)
		}
	}
}
