package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8sjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	k8sscheme "k8s.io/client-go/kubernetes/scheme"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// object is one decoded YAML document.
type object struct {
	// Source says where it came from: a file, or "kustomize DIR".
	Source string
	GVK    schema.GroupVersionKind
	Name   string
	// Namespace as written (kustomize fills it in for overlays).
	Namespace string
	// Obj is the typed object: a client-go or istio.io/client-go type, or
	// *istioOperator.
	Obj any
	// Raw is the document as JSON.
	Raw []byte
}

func (o *object) String() string {
	return fmt.Sprintf("%s %s %s/%s", o.Source, o.GVK.Kind, o.Namespace, o.Name)
}

// strictCodec decodes Kubernetes and Istio kinds, the Gateway API's
// (deploy/mesh/gateway-api) and the Prometheus Operator's
// (deploy/observability-operator), failing on unknown and duplicate fields.
var strictCodec = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{k8sscheme.AddToScheme, istioscheme.AddToScheme, gatewayv1.Install, monitoringv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err) // a broken scheme registration is a bug in the libraries
		}
	}
	return k8sjson.NewSerializerWithOptions(k8sjson.DefaultMetaFactory, s, s,
		k8sjson.SerializerOptions{Yaml: false, Strict: true})
}()

// protoStrict is protojson with unknown fields rejected.
var protoStrict = protojson.UnmarshalOptions{DiscardUnknown: false}

// splitYAML returns the non-empty documents of a YAML stream as JSON.
func splitYAML(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for i := 0; ; i++ {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		j, err := yaml.YAMLToJSONStrict(d)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue
		}
		docs = append(docs, j)
	}
}

// decodeStream decodes every document of a YAML stream strictly.
func decodeStream(source string, data []byte) ([]*object, error) {
	docs, err := splitYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var out []*object
	var errs []error
	for i, d := range docs {
		o, err := decodeDoc(source, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", source, i, err))
			continue
		}
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

func decodeFile(path string) ([]*object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeStream(path, data)
}

// kustomize renders a kustomization directory with kubectl, offline.
func kustomize(dir string) ([]byte, error) {
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl = "kubectl"
	}
	cmd := exec.Command(kubectl, "kustomize", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %w: %s", dir, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// decodeDoc decodes one JSON document into its typed object.
func decodeDoc(source string, raw []byte) (*object, error) {
	var tm struct {
		metav1.TypeMeta
		Metadata struct {
			Name        string            `json:"name"`
			Namespace   string            `json:"namespace"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &tm); err != nil {
		return nil, err
	}
	gvk := tm.GroupVersionKind()
	if gvk.Kind == "" || gvk.Version == "" {
		return nil, errors.New("apiVersion and kind are required")
	}
	o := &object{Source: source, GVK: gvk, Name: tm.Metadata.Name, Namespace: tm.Metadata.Namespace, Raw: raw}
	if gvk.Group == "install.istio.io" && gvk.Kind == "IstioOperator" {
		iop, err := decodeIstioOperator(raw)
		if err != nil {
			return nil, fmt.Errorf("IstioOperator %s: %w", o.Name, err)
		}
		o.Obj = iop
		return o, nil
	}
	obj, _, err := strictCodec.Decode(raw, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk.Kind, o.Name, err)
	}
	o.Obj = obj
	if strings.HasSuffix(gvk.Group, ".istio.io") {
		if err := istioSpecStrict(obj, raw); err != nil {
			return nil, fmt.Errorf("%s %s: spec: %w", gvk.Kind, o.Name, err)
		}
	}
	if gvk.Kind == "EnvoyFilter" {
		if err := checkEnvoyFilter(raw); err != nil {
			return nil, fmt.Errorf("%s %s: %w", gvk.Kind, o.Name, err)
		}
	}
	if err := checkProxyConfigAnnotations(obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk.Kind, o.Name, err)
	}
	return o, nil
}

// istioSpecStrict decodes the document's spec again, with protojson and no
// unknown fields, into the istio.io/api message the typed object holds:
// istio.io/client-go's JSON decoding drops unknown fields silently.
func istioSpecStrict(obj runtime.Object, raw []byte) error {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer {
		return fmt.Errorf("%T is not a pointer", obj)
	}
	f := v.Elem().FieldByName("Spec")
	if !f.IsValid() {
		return fmt.Errorf("%T has no Spec", obj)
	}
	m, ok := f.Addr().Interface().(proto.Message)
	if !ok {
		return fmt.Errorf("%T.Spec is not a proto message", obj)
	}
	var top struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return err
	}
	if len(top.Spec) == 0 {
		return errors.New("missing")
	}
	fresh := m.ProtoReflect().New().Interface()
	return protoStrict.Unmarshal(top.Spec, fresh)
}

// checkProxyConfigAnnotations decodes proxy.istio.io/config annotations on
// pod templates strictly into Istio's ProxyConfig.
func checkProxyConfigAnnotations(obj runtime.Object) error {
	tmpl := podTemplate(obj)
	if tmpl == nil {
		return nil
	}
	pc, ok := tmpl.Annotations["proxy.istio.io/config"]
	if !ok {
		return nil
	}
	if _, err := proxyConfig(pc); err != nil {
		return fmt.Errorf("annotation proxy.istio.io/config: %w", err)
	}
	return nil
}

func proxyConfig(annotation string) (*meshv1alpha1.ProxyConfig, error) {
	j, err := yaml.YAMLToJSONStrict([]byte(annotation))
	if err != nil {
		return nil, err
	}
	var pc meshv1alpha1.ProxyConfig
	if err := protoStrict.Unmarshal(j, &pc); err != nil {
		return nil, err
	}
	return &pc, nil
}

// istioOperator mirrors the fields of IstioOperator that
// istio.io/istio/operator/pkg/apis/types.go declares (that module is too
// large for this one; tools/istioctl builds istioctl from it, and
// `make manifests` runs istioctl validate on the file). meshConfig is decoded
// strictly into istio.io/api's MeshConfig; component k8s settings and values
// are left to istioctl.
type istioOperator struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Profile              string          `json:"profile"`
		InstallPackagePath   string          `json:"installPackagePath"`
		Hub                  string          `json:"hub"`
		Tag                  any             `json:"tag"`
		Namespace            string          `json:"namespace"`
		Revision             string          `json:"revision"`
		CompatibilityVersion string          `json:"compatibilityVersion"`
		MeshConfig           json.RawMessage `json:"meshConfig"`
		Components           *struct {
			Base            *iopComponent `json:"base"`
			Pilot           *iopComponent `json:"pilot"`
			Cni             *iopComponent `json:"cni"`
			Ztunnel         *iopComponent `json:"ztunnel"`
			IstiodRemote    *iopComponent `json:"istiodRemote"`
			IngressGateways []iopGateway  `json:"ingressGateways"`
			EgressGateways  []iopGateway  `json:"egressGateways"`
		} `json:"components"`
		Values            json.RawMessage `json:"values"`
		UnvalidatedValues json.RawMessage `json:"unvalidatedValues"`
	} `json:"spec"`
	Mesh *meshv1alpha1.MeshConfig `json:"-"`
}

type iopComponent struct {
	Enabled   *bool           `json:"enabled"`
	Namespace string          `json:"namespace"`
	Hub       string          `json:"hub"`
	Tag       any             `json:"tag"`
	K8s       json.RawMessage `json:"k8s"`
}

type iopGateway struct {
	Enabled   *bool             `json:"enabled"`
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Label     map[string]string `json:"label"`
	Hub       string            `json:"hub"`
	Tag       any               `json:"tag"`
	K8s       json.RawMessage   `json:"k8s"`
}

func decodeIstioOperator(raw []byte) (*istioOperator, error) {
	var iop istioOperator
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&iop); err != nil {
		return nil, err
	}
	iop.Mesh = &meshv1alpha1.MeshConfig{}
	if len(iop.Spec.MeshConfig) > 0 {
		if err := protoStrict.Unmarshal(iop.Spec.MeshConfig, iop.Mesh); err != nil {
			return nil, fmt.Errorf("spec.meshConfig: %w", err)
		}
	}
	return &iop, nil
}
