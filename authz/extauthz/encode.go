package extauthz

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/transport"
)

// Field numbers of the CheckResponse as Render fills it
// (envoy/service/auth/v3/external_auth.proto, google/rpc/status.proto,
// envoy/config/core/v3/base.proto, google/protobuf/struct.proto). The
// differential test (encode_test.go) holds AppendCheckResponse to
// proto.Marshal(Render(...)).
const (
	respStatus          = 1 // CheckResponse.status
	respDenied          = 2 // CheckResponse.denied_response
	respOK              = 3 // CheckResponse.ok_response
	respDynamicMetadata = 4 // CheckResponse.dynamic_metadata

	statusCode    = 1 // google.rpc.Status.code
	statusMessage = 2 // google.rpc.Status.message

	deniedStatus  = 1 // DeniedHttpResponse.status (type.v3.HttpStatus)
	deniedHeaders = 2 // DeniedHttpResponse.headers
	deniedBody    = 3 // DeniedHttpResponse.body
	httpStatus    = 1 // type.v3.HttpStatus.code

	okHeaders              = 2 // OkHttpResponse.headers
	okHeadersToRemove      = 5 // OkHttpResponse.headers_to_remove
	okResponseHeadersToAdd = 6 // OkHttpResponse.response_headers_to_add

	optionHeader       = 1 // HeaderValueOption.header
	optionAppendAction = 3 // HeaderValueOption.append_action
	headerKey          = 1 // HeaderValue.key
	headerValue        = 2 // HeaderValue.value

	structFields = 1 // Struct.fields (map<string, Value>)
	entryKey     = 1 // map entry key
	entryValue   = 2 // map entry value
	valueString  = 3 // Value.string_value
)

// AppendCheckResponse appends the wire form of Render(d, requestID) to
// dst, without building the message: the bytes proto.Marshal writes with
// Deterministic set (the metadata's keys sorted), which Envoy reads as the
// same message as any other order. Every string goes through the same
// UTF-8 repair as Render's echoed values, so it never fails where
// proto.Marshal would refuse.
func AppendCheckResponse(dst []byte, d *authz.Decision, requestID string) []byte {
	code, ok := grpcStatus[d.Code]
	if !ok {
		code = codes.PermissionDenied
	}
	b := dst
	// status
	var m int
	b, m = beginMessage(b, respStatus)
	if code != codes.OK {
		b = appendVarintField(b, statusCode, uint64(code))
	}
	if !d.Allowed() {
		b = appendStringField(b, statusMessage, d.Reason)
	}
	b = endMessage(b, m)

	b, m = beginMessage(b, respDynamicMetadata)
	// In key order, as proto.Marshal writes a map deterministically.
	if d.Identity != nil {
		b = appendMetadata(b, "authenticator", d.Identity.Authenticator, false)
	}
	b = appendMetadata(b, "decision_id", d.ID, true)
	if d.Identity != nil {
		b = appendMetadata(b, "plan", d.Identity.Plan, false)
	}
	b = appendMetadata(b, "rate_limit_policy", d.RateLimitPolicy, false)
	b = appendMetadata(b, "reason", d.Reason, false)
	b = appendMetadata(b, "result", d.Code.String(), false)
	b = appendMetadata(b, "rule", d.Rule, false)
	if d.Identity != nil {
		b = appendMetadata(b, "subject", d.Identity.Subject, false)
	}
	b = endMessage(b, m)

	// protobuf-go writes a oneof after the other fields.
	if d.Allowed() {
		b, m = beginMessage(b, respOK)
		b = appendHeaderOptions(b, okHeaders, d.UpstreamHeaders, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
		for _, h := range d.RemoveHeaders {
			b = appendStringAlways(b, okHeadersToRemove, h)
		}
		b = appendHeaderOptions(b, okResponseHeadersToAdd, d.ResponseHeaders, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
		b = endMessage(b, m)
	} else {
		b, m = beginMessage(b, respDenied)
		var s int
		b, s = beginMessage(b, deniedStatus)
		if st := transport.HTTPStatus(d.Code); st != 0 {
			b = appendVarintField(b, httpStatus, uint64(int32(st)))
		}
		b = endMessage(b, s)
		b = appendHeaderOptions(b, deniedHeaders, transport.DenyHeaders(d), corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
		b = appendStringField(b, deniedBody, transport.DenyBody(d, requestID))
		b = endMessage(b, m)
	}
	return b
}

// beginMessage starts a length-delimited field and reserves one byte for
// its length; endMessage writes the length, moving the body when it needs
// more bytes (a body of 128 bytes or more).
func beginMessage(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return append(b, 0), len(b) + 1
}

func endMessage(b []byte, start int) []byte {
	n := len(b) - start
	if n < 0x80 {
		b[start-1] = byte(n)
		return b
	}
	k := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, k-1)...)
	copy(b[start+k-1:], b[start:start+n])
	protowire.AppendVarint(b[:start-1], uint64(n))
	return b
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

// appendStringField writes a proto3 string: nothing when it is empty.
func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendStringAlways(b, num, s)
}

// appendStringAlways writes a string that is there even when empty (an
// element of a repeated field, a oneof member, a map key).
func appendStringAlways(b []byte, num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), safe(s))
}

func appendHeaderOptions(b []byte, num protowire.Number, hs []authz.Header, action corev3.HeaderValueOption_HeaderAppendAction) []byte {
	for _, h := range hs {
		var o, v int
		b, o = beginMessage(b, num)
		b, v = beginMessage(b, optionHeader)
		b = appendStringField(b, headerKey, h.Name)
		b = appendStringField(b, headerValue, h.Value)
		b = endMessage(b, v)
		if action != 0 {
			b = appendVarintField(b, optionAppendAction, uint64(action))
		}
		b = endMessage(b, o)
	}
	return b
}

// appendMetadata writes one entry of the metadata Struct: a string Value
// under key, or nothing when value is empty, unless always.
func appendMetadata(b []byte, key, value string, always bool) []byte {
	if value == "" && !always {
		return b
	}
	var e, v int
	b, e = beginMessage(b, structFields)
	b = appendStringAlways(b, entryKey, key)
	b, v = beginMessage(b, entryValue)
	b = appendStringAlways(b, valueString, value)
	b = endMessage(b, v)
	return endMessage(b, e)
}
