package extauthz

import (
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The lean decoder (wire.go) walks every byte of a CheckRequest, as
// proto.Unmarshal does, so that it refuses exactly what proto.Unmarshal
// refuses; it keeps only the fields authz.Request needs. What it must know
// of every message is in these tables, built once from the generated
// descriptors, so a new field in a go-control-plane upgrade is validated the
// way protobuf-go validates it without a change here.

// wireKind is how a field's bytes are checked.
type wireKind uint8

const (
	// wireOther: a scalar, bytes or a number the message does not define.
	// Any wire type is consumed as it is; nothing in it can be refused
	// beyond the wire format itself.
	wireOther wireKind = iota
	// wireString: a string that must be valid UTF-8 (proto3).
	wireString
	// wireMessage: a message (singular, repeated or a oneof member).
	wireMessage
	// wireMap: a map field; its entry is walked like a message.
	wireMap
)

// capture says what the decoder keeps of a field on the captured path.
type capture uint8

const (
	capNone capture = iota
	// Strings of HttpRequest and of the source's socket address: last one
	// wins, as for any proto3 scalar.
	capID
	capMethod
	capPath
	capHost
	capScheme
	capPeer
	// AttributeContext.source.principal and .certificate.
	capSourcePrincipal
	capSourceCertificate
	// Fields of a map entry or of a HeaderValue, into the current entry.
	capKey
	capValue
	capRaw
	// Collections: each entry or element is committed when it is complete.
	capHeaders       // HttpRequest.headers (map)
	capContext       // AttributeContext.context_extensions (map)
	capHeaderValue   // HeaderMap.headers (repeated HeaderValue)
	capSocketAddress // Address.socket_address (oneof member)
	capOtherAddress  // Address.pipe, Address.envoy_internal_address
)

type wireField struct {
	kind    wireKind
	capture capture
	msg     *wireMsg // for wireMsg; the entry for wireMap
}

type wireMsg struct {
	name   protoreflect.FullName
	fields []wireField // by field number; a number past the end is wireOther
}

func (m *wireMsg) field(num protoreflect.FieldNumber) *wireField {
	if int(num) < len(m.fields) {
		return &m.fields[num]
	}
	return &otherField
}

var otherField = wireField{kind: wireOther}

// checkRequestSchema is the CheckRequest's table with the captured path
// marked.
var checkRequestSchema = buildCheckRequestSchema()

// enforceUTF8 is protobuf-go's rule (internal/strs.EnforceUTF8) for
// whether a string field's bytes must be UTF-8.
func enforceUTF8(fd protoreflect.FieldDescriptor) bool {
	if fd.Syntax() == protoreflect.Editions {
		if f, ok := fd.(interface{ EnforceUTF8() bool }); ok {
			return f.EnforceUTF8()
		}
	}
	return fd.Syntax() == protoreflect.Proto3
}

type schemaBuilder struct {
	done map[protoreflect.FullName]*wireMsg
}

func (b *schemaBuilder) message(md protoreflect.MessageDescriptor) *wireMsg {
	if m, ok := b.done[md.FullName()]; ok {
		return m
	}
	m := &wireMsg{name: md.FullName()}
	b.done[md.FullName()] = m
	fs := md.Fields()
	top := 0
	for i := range fs.Len() {
		top = max(top, int(fs.Get(i).Number()))
	}
	m.fields = make([]wireField, top+1)
	for i := range fs.Len() {
		fd := fs.Get(i)
		m.fields[fd.Number()] = b.field(fd)
	}
	return m
}

func (b *schemaBuilder) field(fd protoreflect.FieldDescriptor) wireField {
	switch {
	case fd.IsMap():
		return wireField{kind: wireMap, msg: b.message(fd.Message())}
	case fd.Kind() == protoreflect.MessageKind:
		return wireField{kind: wireMessage, msg: b.message(fd.Message())}
	case fd.Kind() == protoreflect.GroupKind:
		// No message under CheckRequest has a group; a group would need
		// its own walk. TestWireSchemaCoversCheckRequest keeps it so.
		return wireField{kind: wireOther}
	case fd.Kind() == protoreflect.StringKind && enforceUTF8(fd):
		return wireField{kind: wireString}
	}
	return wireField{kind: wireOther}
}

// clone copies a table so that the captured path can be marked without
// marking the same message elsewhere (the destination's Peer, say).
func clone(m *wireMsg) *wireMsg {
	c := *m
	c.fields = append([]wireField(nil), m.fields...)
	return &c
}

// mark clones the message of field name under m, sets the field's
// capture, and returns the clone.
func mark(m *wireMsg, md protoreflect.MessageDescriptor, name protoreflect.Name, c capture) (*wireMsg, protoreflect.MessageDescriptor) {
	fd := md.Fields().ByName(name)
	f := &m.fields[fd.Number()]
	f.capture = c
	if f.msg == nil {
		return nil, nil
	}
	f.msg = clone(f.msg)
	return f.msg, fd.Message()
}

func buildCheckRequestSchema() *wireMsg {
	b := &schemaBuilder{done: map[protoreflect.FullName]*wireMsg{}}
	crd := (&authv3.CheckRequest{}).ProtoReflect().Descriptor()
	cr := clone(b.message(crd))

	attrs, ad := mark(cr, crd, "attributes", capNone)

	src, pd := mark(attrs, ad, "source", capNone)
	addr, addrd := mark(src, pd, "address", capNone)
	sock, sd := mark(addr, addrd, "socket_address", capSocketAddress)
	mark(sock, sd, "address", capPeer)
	mark(addr, addrd, "pipe", capOtherAddress)
	mark(addr, addrd, "envoy_internal_address", capOtherAddress)
	mark(src, pd, "principal", capSourcePrincipal)
	mark(src, pd, "certificate", capSourceCertificate)

	ctx, ctxd := mark(attrs, ad, "context_extensions", capContext)
	mark(ctx, ctxd, "key", capKey)
	mark(ctx, ctxd, "value", capValue)

	req, rd := mark(attrs, ad, "request", capNone)
	http, hd := mark(req, rd, "http", capNone)
	mark(http, hd, "id", capID)
	mark(http, hd, "method", capMethod)
	mark(http, hd, "path", capPath)
	mark(http, hd, "host", capHost)
	mark(http, hd, "scheme", capScheme)
	hs, hsd := mark(http, hd, "headers", capHeaders)
	mark(hs, hsd, "key", capKey)
	mark(hs, hsd, "value", capValue)
	hm, hmd := mark(http, hd, "header_map", capNone)
	hv, hvd := mark(hm, hmd, "headers", capHeaderValue)
	mark(hv, hvd, "key", capKey)
	mark(hv, hvd, "value", capValue)
	mark(hv, hvd, "raw_value", capRaw)
	return cr
}
