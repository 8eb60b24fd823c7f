package deploy

import (
	"encoding/json"
	"errors"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"

	// The Envoy extensions the EnvoyFilters put into typed_config and
	// typed_per_filter_config: importing them registers their types so the
	// Any values resolve. A patch using another extension fails with
	// "unable to resolve" until its package is added here.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
)

// envoyPatch is one EnvoyFilter config patch with its value decoded into
// the Envoy type its applyTo names.
type envoyPatch struct {
	ApplyTo   networkingv1alpha3.EnvoyFilter_ApplyTo
	Operation networkingv1alpha3.EnvoyFilter_Patch_Operation
	Match     *networkingv1alpha3.EnvoyFilter_EnvoyConfigObjectMatch
	// Value is nil for REMOVE.
	Value proto.Message
}

// envoyFilter is a decoded EnvoyFilter spec and its patches.
type envoyFilter struct {
	Spec    *networkingv1alpha3.EnvoyFilter
	Patches []envoyPatch
}

// newEnvoyObject returns the Envoy message a patch value is for, as Istio
// itself maps them (istio.io/istio pkg/config/xds.BuildXDSObjectFromStruct).
func newEnvoyObject(applyTo networkingv1alpha3.EnvoyFilter_ApplyTo) (proto.Message, error) {
	switch applyTo {
	case networkingv1alpha3.EnvoyFilter_CLUSTER:
		return &clusterv3.Cluster{}, nil
	case networkingv1alpha3.EnvoyFilter_LISTENER:
		return &listenerv3.Listener{}, nil
	case networkingv1alpha3.EnvoyFilter_ROUTE_CONFIGURATION:
		return &routev3.RouteConfiguration{}, nil
	case networkingv1alpha3.EnvoyFilter_FILTER_CHAIN:
		return &listenerv3.FilterChain{}, nil
	case networkingv1alpha3.EnvoyFilter_HTTP_FILTER:
		return &hcmv3.HttpFilter{}, nil
	case networkingv1alpha3.EnvoyFilter_NETWORK_FILTER:
		return &listenerv3.Filter{}, nil
	case networkingv1alpha3.EnvoyFilter_VIRTUAL_HOST:
		return &routev3.VirtualHost{}, nil
	case networkingv1alpha3.EnvoyFilter_HTTP_ROUTE:
		return &routev3.Route{}, nil
	case networkingv1alpha3.EnvoyFilter_EXTENSION_CONFIG:
		return &corev3.TypedExtensionConfig{}, nil
	case networkingv1alpha3.EnvoyFilter_BOOTSTRAP:
		return &bootstrapv3.Bootstrap{}, nil
	case networkingv1alpha3.EnvoyFilter_LISTENER_FILTER:
		return &listenerv3.ListenerFilter{}, nil
	}
	return nil, fmt.Errorf("applyTo %s has no Envoy type", applyTo)
}

// parseEnvoyFilter decodes an EnvoyFilter document: the spec strictly, and
// every patch value strictly into its Envoy type, then validates it.
func parseEnvoyFilter(raw []byte) (*envoyFilter, error) {
	var top struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, err
	}
	ef := &envoyFilter{Spec: &networkingv1alpha3.EnvoyFilter{}}
	if err := protoStrict.Unmarshal(top.Spec, ef.Spec); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	var errs []error
	for i, cp := range ef.Spec.GetConfigPatches() {
		p := envoyPatch{ApplyTo: cp.GetApplyTo(), Operation: cp.GetPatch().GetOperation(), Match: cp.GetMatch()}
		at := fmt.Sprintf("configPatches[%d] (%s %s)", i, p.ApplyTo, p.Operation)
		if cp.GetPatch() == nil {
			errs = append(errs, fmt.Errorf("%s: no patch", at))
			continue
		}
		if v := cp.GetPatch().GetValue(); v != nil {
			msg, err := newEnvoyObject(p.ApplyTo)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", at, err))
				continue
			}
			j, err := protojson.Marshal(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", at, err))
				continue
			}
			opts := protojson.UnmarshalOptions{DiscardUnknown: false, Resolver: protoregistry.GlobalTypes}
			if err := opts.Unmarshal(j, msg); err != nil {
				errs = append(errs, fmt.Errorf("%s: patch.value as %s: %w", at, msg.ProtoReflect().Descriptor().FullName(), err))
				continue
			}
			whole := p.Operation != networkingv1alpha3.EnvoyFilter_Patch_MERGE
			if err := validateEnvoy(msg.ProtoReflect(), whole); err != nil {
				errs = append(errs, fmt.Errorf("%s: patch.value: %w", at, err))
				continue
			}
			p.Value = msg
		}
		ef.Patches = append(ef.Patches, p)
	}
	return ef, errors.Join(errs...)
}

func checkEnvoyFilter(raw []byte) error {
	_, err := parseEnvoyFilter(raw)
	return err
}

type allValidator interface{ ValidateAll() error }

// validateEnvoy runs Envoy's validation rules (protoc-gen-validate's
// ValidateAll) on a patch value. A whole value (ADD, INSERT_*, REPLACE) is
// validated as a complete message. A MERGE value is a fragment merged into
// what Istio generated, so its own required fields may be absent; what a
// merge brings in whole is validated: elements of repeated fields (appended)
// and map values (replaced). Any payloads are unpacked with the registered
// types and validated everywhere (ValidateAll does not look inside an Any):
// as a whole message, unless the Any itself is part of a fragment (a
// typed_config merged into the one Istio generated, as when a MERGE patches
// the HTTP connection manager), where its payload is a fragment too.
func validateEnvoy(m protoreflect.Message, whole bool) error {
	if whole {
		return validateTree(m, validateWhole)
	}
	return validateTree(m, validateFragment)
}

// How validateTree treats a message.
type validateMode int

const (
	validateFragment validateMode = iota // part of a MERGE: not complete
	validateWhole                        // complete: run ValidateAll
	validateCovered                      // inside a message ValidateAll covered
)

func validateTree(m protoreflect.Message, mode validateMode) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		innerMode := validateWhole
		if mode == validateFragment {
			innerMode = validateFragment
		}
		if err := validateTree(inner.ProtoReflect(), innerMode); err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		return nil
	}
	if mode == validateWhole {
		if v, ok := m.Interface().(allValidator); ok {
			if err := v.ValidateAll(); err != nil {
				return err
			}
		}
		mode = validateCovered
	}
	// Elements of lists and values of maps are complete messages in a
	// fragment; a singular message field is as complete as its parent.
	elem := mode
	if mode == validateFragment {
		elem = validateWhole
	}
	var errs []error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				if err := validateTree(l.Get(i).Message(), elem); err != nil {
					errs = append(errs, fmt.Errorf("%s[%d]: %w", fd.Name(), i, err))
				}
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if err := validateTree(mv.Message(), elem); err != nil {
					errs = append(errs, fmt.Errorf("%s[%s]: %w", fd.Name(), k, err))
				}
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			if err := validateTree(v.Message(), mode); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", fd.Name(), err))
			}
		}
		return true
	})
	return errors.Join(errs...)
}
