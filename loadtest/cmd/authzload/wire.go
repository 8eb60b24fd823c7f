package main

import (
	"errors"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The lean client side of the driver (-decode lean, the default).
//
// The driver shares the machine's cores with the servers it measures, so
// its own CPU per answer is measurement overhead, and it must not depend on
// what the server answers. grpc-go's proto codec builds the whole
// CheckResponse: every identity header, header to remove and dynamic
// metadata entry of ext-authz's OK answer becomes objects and map entries,
// while the no-op's OK answer is empty. That cost the driver ~43 µs per
// ext-authz answer against ~35 µs per no-op answer (RESULTS.md).
//
// leanCodec reads answers with protowire instead: it walks every byte and
// refuses exactly what proto.Unmarshal refuses (wire format, field numbers,
// UTF-8 in every proto3 string, protobuf-go's recursion limit), from tables
// built once from the generated descriptors, but allocates nothing and
// keeps only what the driver judges: the CheckResponse's status code and
// which http_response member it carries, the RateLimitResponse's
// overall_code. Requests are marshalled once, before the run. The
// differential tests (wire_test.go) hold it to proto.Unmarshal on random,
// real and malformed answers.

// Response kinds: the CheckResponse's http_response oneof member.
const (
	kindNone   uint8 = iota
	kindDenied       // denied_response (2)
	kindOK           // ok_response (3)
	kindError        // error_response (5)
)

// checkAnswer is what the driver judges of a CheckResponse.
type checkAnswer struct {
	Code int32 // status.code
	Kind uint8 // kindNone, kindDenied, kindOK, kindError
}

// rateLimitAnswer is what the driver judges of a RateLimitResponse.
type rateLimitAnswer struct {
	Code int32 // overall_code
}

// wireRequest is a request marshalled once, sent as it is.
type wireRequest struct{ data mem.BufferSlice }

func newWireRequest(m proto.Message) (*wireRequest, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &wireRequest{data: mem.BufferSlice{mem.SliceBuffer(b)}}, nil
}

var errUnreadable = errors.New("unreadable response")

// leanCodec is the driver's client codec for -decode lean. Its name is
// "proto", so the wire (content-type application/grpc+proto) is the same as
// with grpc-go's codec; the servers cannot tell the two apart.
type leanCodec struct{}

var _ encoding.CodecV2 = leanCodec{}

func (leanCodec) Name() string { return grpcproto.Name }

// Marshal returns a prebuilt request's bytes. Its buffer is a SliceBuffer,
// whose Free does nothing, so the same bytes are sent again and again.
func (leanCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(*wireRequest)
	if !ok {
		return nil, errors.New("lean codec: only prebuilt requests")
	}
	return r.data, nil
}

// Unmarshal reads an answer into a checkAnswer or a rateLimitAnswer.
func (leanCodec) Unmarshal(data mem.BufferSlice, v any) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	switch a := v.(type) {
	case *checkAnswer:
		var err error
		*a, err = readCheckAnswer(b)
		return err
	case *rateLimitAnswer:
		var err error
		*a, err = readRateLimitAnswer(b)
		return err
	}
	return errors.New("lean codec: unknown answer type")
}

// readCheckAnswer reads a serialized CheckResponse as proto.Unmarshal
// would, keeping status.code and the http_response member.
func readCheckAnswer(b []byte) (checkAnswer, error) {
	var w walker
	if !w.message(b, checkResponseSchema, protowire.DefaultRecursionLimit-1) {
		return checkAnswer{}, errUnreadable
	}
	return checkAnswer{Code: w.code, Kind: w.kind}, nil
}

// readRateLimitAnswer reads a serialized RateLimitResponse as
// proto.Unmarshal would, keeping overall_code.
func readRateLimitAnswer(b []byte) (rateLimitAnswer, error) {
	var w walker
	if !w.message(b, rateLimitResponseSchema, protowire.DefaultRecursionLimit-1) {
		return rateLimitAnswer{}, errUnreadable
	}
	return rateLimitAnswer{Code: w.code}, nil
}

// fullCheckAnswer and fullRateLimitAnswer are what -decode full judges of
// the messages grpc-go's codec built.
func fullCheckAnswer(r *authv3.CheckResponse) checkAnswer {
	a := checkAnswer{Code: r.GetStatus().GetCode()}
	switch r.GetHttpResponse().(type) {
	case *authv3.CheckResponse_DeniedResponse:
		a.Kind = kindDenied
	case *authv3.CheckResponse_OkResponse:
		a.Kind = kindOK
	case *authv3.CheckResponse_ErrorResponse:
		a.Kind = kindError
	}
	return a
}

func fullRateLimitAnswer(r *rlsv3.RateLimitResponse) rateLimitAnswer {
	return rateLimitAnswer{Code: int32(r.GetOverallCode())}
}

// wireKind is how a field's bytes are checked.
type wireKind uint8

const (
	// wireOther: a scalar, bytes or an undefined number; consumed by its
	// wire type, nothing else to check.
	wireOther wireKind = iota
	wireString
	wireMessage
	wireMap
)

// capture is what the walker keeps of a field.
type capture uint8

const (
	capNone capture = iota
	capCode         // Status.code, RateLimitResponse.overall_code: int32/enum varint, last wins
	capKind         // a member of CheckResponse.http_response: last wins
)

type wireField struct {
	kind    wireKind
	capture capture
	value   uint8    // for capKind: the kind
	msg     *wireMsg // wireMessage: its message; wireMap: the entry
}

type wireMsg struct {
	fields []wireField // by field number; a number past the end is wireOther
}

var otherField = wireField{}

func (m *wireMsg) field(num protowire.Number) *wireField {
	if int(num) < len(m.fields) {
		return &m.fields[num]
	}
	return &otherField
}

var (
	checkResponseSchema     = buildCheckResponseSchema()
	rateLimitResponseSchema = buildRateLimitResponseSchema()
)

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
	// groups counts group-kind fields met: the walker has no walk for
	// them (TestSchemasHaveNoGroups keeps it zero).
	groups int
}

func newSchemaBuilder() *schemaBuilder {
	return &schemaBuilder{done: map[protoreflect.FullName]*wireMsg{}}
}

func (b *schemaBuilder) message(md protoreflect.MessageDescriptor) *wireMsg {
	if m, ok := b.done[md.FullName()]; ok {
		return m
	}
	m := &wireMsg{}
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
		b.groups++
		return wireField{kind: wireOther}
	case fd.Kind() == protoreflect.StringKind && enforceUTF8(fd):
		return wireField{kind: wireString}
	}
	return wireField{kind: wireOther}
}

// clone copies a table so that fields can be marked without marking the
// same message elsewhere.
func clone(m *wireMsg) *wireMsg {
	return &wireMsg{fields: append([]wireField(nil), m.fields...)}
}

func checkResponseDescriptor() protoreflect.MessageDescriptor {
	return (&authv3.CheckResponse{}).ProtoReflect().Descriptor()
}

func buildCheckResponseSchema() *wireMsg {
	b := newSchemaBuilder()
	md := checkResponseDescriptor()
	m := clone(b.message(md))
	fs := md.Fields()
	st := &m.fields[fs.ByName("status").Number()]
	st.msg = clone(st.msg)
	st.msg.fields[fs.ByName("status").Message().Fields().ByName("code").Number()].capture = capCode
	for name, kind := range map[protoreflect.Name]uint8{"denied_response": kindDenied, "ok_response": kindOK, "error_response": kindError} {
		f := &m.fields[fs.ByName(name).Number()]
		f.capture, f.value = capKind, kind
	}
	return m
}

func rateLimitResponseDescriptor() protoreflect.MessageDescriptor {
	return (&rlsv3.RateLimitResponse{}).ProtoReflect().Descriptor()
}

func buildRateLimitResponseSchema() *wireMsg {
	b := newSchemaBuilder()
	md := rateLimitResponseDescriptor()
	m := clone(b.message(md))
	m.fields[md.Fields().ByName("overall_code").Number()].capture = capCode
	return m
}

// walker walks one message. The captured fields (capCode, capKind) exist
// only on the path from the root (the tables are cloned there), so
// nothing deeper can set them.
type walker struct {
	code int32
	kind uint8
}

// message walks the fields of one message (or map entry) in b. depth is
// what is left of the recursion limit after entering it.
//
// The checks and their order are protobuf-go's (internal/impl decode.go,
// codec_map.go), as in the server's lean decoder (authz/extauthz/wire.go):
// a tag's number must be 1..2^29-1 and not end a group; a field whose wire
// type is not the one its kind expects is an unknown field, consumed
// whole; a map takes one from the depth before its wire type is looked at,
// a message after its length is read.
func (w *walker) message(b []byte, m *wireMsg, depth int) bool {
	for len(b) > 0 {
		tag, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		num := tag >> 3
		if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
			return false
		}
		typ := protowire.Type(tag & 7)
		if typ == protowire.EndGroupType {
			return false
		}
		if n = w.field(b, m.field(protowire.Number(num)), protowire.Number(num), typ, depth); n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// field consumes one field's value at the start of b and returns its
// length, or -1 when proto.Unmarshal would fail.
func (w *walker) field(b []byte, f *wireField, num protowire.Number, typ protowire.Type, depth int) int {
	if f.kind == wireMap {
		if depth--; depth < 0 {
			return -1
		}
	}
	if f.capture == capCode && typ == protowire.VarintType {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return -1
		}
		w.code = int32(v) // int32 and enum fields truncate as protobuf-go does
		return n
	}
	if typ != protowire.BytesType || f.kind == wireOther {
		return protowire.ConsumeFieldValue(num, typ, b)
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return -1
	}
	switch f.kind {
	case wireString:
		if !utf8.Valid(v) {
			return -1
		}
	case wireMessage:
		if depth--; depth < 0 {
			return -1
		}
		if f.capture == capKind {
			w.kind = f.value
		}
		if !w.message(v, f.msg, depth) {
			return -1
		}
	case wireMap:
		if !w.message(v, f.msg, depth) {
			return -1
		}
	}
	return n
}
