package deploy

import (
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// podTemplate returns the pod template of a workload, or nil.
func podTemplate(obj any) *corev1.PodTemplateSpec {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.StatefulSet:
		return &o.Spec.Template
	case *appsv1.DaemonSet:
		return &o.Spec.Template
	}
	return nil
}

// find returns the objects of type T, optionally with the given name.
func find[T runtime.Object](objs []*object, name string) []T {
	var out []T
	for _, o := range objs {
		if t, ok := o.Obj.(T); ok && (name == "" || o.Name == name) {
			out = append(out, t)
		}
	}
	return out
}

// one returns the only object of type T with the name, or an error.
func one[T runtime.Object](objs []*object, name string) (T, error) {
	all := find[T](objs, name)
	if len(all) != 1 {
		var zero T
		return zero, fmt.Errorf("want one %T named %q, found %d", zero, name, len(all))
	}
	return all[0], nil
}

// pod is a pod template with where it lives.
type pod struct {
	Owner     string
	Namespace string
	Template  *corev1.PodTemplateSpec
}

func pods(objs []*object) []pod {
	var out []pod
	for _, o := range objs {
		if t := podTemplate(o.Obj); t != nil {
			out = append(out, pod{Owner: o.GVK.Kind + "/" + o.Name, Namespace: o.Namespace, Template: t})
		}
	}
	return out
}

// selects returns the pods in namespace ns the label selector selects.
func selects(sel labels.Selector, ns string, ps []pod) []pod {
	var out []pod
	for _, p := range ps {
		if p.Namespace == ns && sel.Matches(labels.Set(p.Template.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

func labelSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return labels.Nothing(), nil
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// containerPort resolves a probe or Service target port against a
// container's declared ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if p.Type == intstr.String && cp.Name == p.StrVal {
			return cp.ContainerPort, true
		}
		if p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func probePort(pr *corev1.Probe) (intstr.IntOrString, bool) {
	switch {
	case pr == nil:
		return intstr.IntOrString{}, false
	case pr.GRPC != nil:
		return intstr.FromInt32(pr.GRPC.Port), true
	case pr.HTTPGet != nil:
		return pr.HTTPGet.Port, true
	case pr.TCPSocket != nil:
		return pr.TCPSocket.Port, true
	}
	return intstr.IntOrString{}, false
}

func portString(p intstr.IntOrString) string {
	if p.Type == intstr.Int {
		return strconv.Itoa(int(p.IntVal))
	}
	return p.StrVal
}

// namespaceLabels are a namespace's labels as the API server stores them,
// with the automatic kubernetes.io/metadata.name.
func namespaceLabels(objs []*object, ns string) labels.Set {
	set := labels.Set{"kubernetes.io/metadata.name": ns}
	for _, n := range find[*corev1.Namespace](objs, ns) {
		for k, v := range n.Labels {
			set[k] = v
		}
	}
	return set
}
