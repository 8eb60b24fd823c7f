package extauthz

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// HTTPRequest describes a request as a client sent it to the gateway. It is
// the input of BuildCheckRequest, for tests, load drivers and the check
// command.
type HTTPRequest struct {
	Method string
	Scheme string // default https
	Host   string
	// Path includes the query string, as Envoy sends it.
	Path string
	// Headers are as the client sent them; repeated names are comma-joined
	// the way Envoy joins them.
	Headers [][2]string
	// PeerAddress is the gateway's direct peer (default 127.0.0.1).
	PeerAddress string
	// RequestID is the x-request-id the gateway assigned.
	RequestID string
	// ContextExtensions are the per-route values of the gateway's route.
	ContextExtensions map[string]string
	// SourcePrincipal and SourceCertificate are the client certificate's
	// identity and the certificate itself (URL-encoded PEM), as a gateway
	// with mutual TLS (and include_peer_certificate) sends them.
	SourcePrincipal, SourceCertificate string
}

// BuildCheckRequest builds the CheckRequest an Istio ingress gateway's Envoy
// sends for r: pseudo-headers in the header map, lower-case names, repeated
// headers comma-joined, path with the query, x-request-id set.
func BuildCheckRequest(r HTTPRequest) *authv3.CheckRequest {
	scheme := r.Scheme
	if scheme == "" {
		scheme = "https"
	}
	peer := r.PeerAddress
	if peer == "" {
		peer = "127.0.0.1"
	}
	h := map[string]string{
		":authority": r.Host,
		":path":      r.Path,
		":method":    r.Method,
		":scheme":    scheme,
	}
	if r.RequestID != "" {
		h["x-request-id"] = r.RequestID
	}
	for _, kv := range r.Headers {
		k := strings.ToLower(kv[0])
		if prev, ok := h[k]; ok {
			sep := ","
			if k == "cookie" {
				sep = "; "
			}
			h[k] = prev + sep + kv[1]
			continue
		}
		h[k] = kv[1]
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: socket(peer, 50000),
			Principal: r.SourcePrincipal, Certificate: r.SourceCertificate},
		Destination: &authv3.AttributeContext_Peer{Address: socket("10.0.0.1", 8443)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       r.RequestID,
				Method:   r.Method,
				Headers:  h,
				Path:     r.Path,
				Host:     r.Host,
				Scheme:   scheme,
				Protocol: "HTTP/2",
			},
		},
		ContextExtensions: r.ContextExtensions,
	}}
}

func socket(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
