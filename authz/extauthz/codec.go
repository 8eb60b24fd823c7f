package extauthz

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz"
)

// Codec is the server's gRPC codec (install it with grpc.ForceServerCodecV2):
// grpc-go's proto codec, except that a CheckRequest it cannot decode
// becomes a marked, empty request instead of an error. Go's protobuf
// refuses invalid UTF-8 in proto3 strings (Envoy does not: a header value
// may hold any byte, and Envoy copies it into the headers map) and Structs
// nested past its recursion limit; grpc-go then fails the call with
// INTERNAL, which Envoy answers with its status_on_error, counted nowhere.
// With this codec Check answers such a request deliberately: 400
// unreadable_request, counted by ext_authz_unreadable_requests_total.
// Every other message (health, reflection) decodes exactly as before; a
// WireUnmarshaler (the rate-limit service's lean path) decodes itself.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name is "proto": the codec replaces the default one for the same
// content-type.
func (Codec) Name() string { return grpcproto.Name }

// Marshal is grpc-go's, except for the lean path's answers (see
// Register), which are already in wire form.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(mem.Buffer); ok {
		return mem.BufferSlice{b}, nil
	}
	return protoCodec().Marshal(v)
}

// Unmarshal decodes with grpc-go's codec; a CheckRequest that fails is
// reset and marked with why (see Unreadable). The lean path's Check (see
// Register) is decoded by DecodeCheckRequest instead, which refuses the
// same messages for the same reasons.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if c, ok := v.(*checkCall); ok {
		if len(data) == 1 {
			c.req, c.unreadable = DecodeCheckRequest(data[0].ReadOnlyData())
			return nil
		}
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		c.req, c.unreadable = DecodeCheckRequest(buf.ReadOnlyData())
		return nil
	}
	if w, ok := v.(WireUnmarshaler); ok {
		return w.UnmarshalWire(data)
	}
	err := protoCodec().Unmarshal(data, v)
	req, ok := v.(*authv3.CheckRequest)
	if err == nil || !ok {
		return err
	}
	proto.Reset(req)
	markUnreadable(req, unreadableReason(err))
	return nil
}

// WireUnmarshaler is a lean path's request that decodes its own wire form
// (rls.Call, for ShouldRateLimit; see rls.Register). Its error is the
// codec's, so grpc-go answers it as it answers proto.Unmarshal's.
type WireUnmarshaler interface {
	UnmarshalWire(data mem.BufferSlice) error
}

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2(grpcproto.Name) }

// Why a CheckRequest could not be read: the values of the reason label.
const (
	UnreadableInvalidUTF8 = "invalid_utf8"
	UnreadableTooDeep     = "too_deep"
	UnreadableMalformed   = "malformed"
)

var unreadableReasons = []string{UnreadableInvalidUTF8, UnreadableTooDeep, UnreadableMalformed}

// unreadableReason classifies a protobuf decoding error. protobuf-go
// offers no typed errors for these, only its messages.
func unreadableReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "invalid UTF-8"):
		return UnreadableInvalidUTF8
	case strings.Contains(msg, "recursion"):
		return UnreadableTooDeep
	}
	return UnreadableMalformed
}

// unreadableField is the field number of the mark: the largest valid one,
// which CheckRequest does not define. A client could send it itself; it
// would only get its own request refused.
const unreadableField = protowire.Number(1<<29 - 1)

func markUnreadable(req *authv3.CheckRequest, reason string) {
	b := protowire.AppendTag(nil, unreadableField, protowire.BytesType)
	b = protowire.AppendString(b, reason)
	req.ProtoReflect().SetUnknown(b)
}

// Unreadable reports whether the Codec could not decode req, and why (one
// of the Unreadable* reasons).
func Unreadable(req *authv3.CheckRequest) (reason string, ok bool) {
	b := req.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if num == unreadableField && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return "", false
			}
			// The value may be the client's: only a known reason is used
			// as a label.
			return markReason(v), true
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return "", false
		}
		b = b[m:]
	}
	return "", false
}

// ReasonUnreadable is the reason word of the 400 answering a CheckRequest
// the Codec could not decode.
const ReasonUnreadable = "unreadable_request"

// refuseUnreadable answers a request the Codec could not decode: 400, and
// counted. Nothing of the request is known, so the pipeline is not asked.
func (s *Server) refuseUnreadable(ctx context.Context, reason string) *authv3.CheckResponse {
	d := s.unreadableDecision(ctx, reason)
	return Render(&d, "")
}

// unreadableDecision is the decision on a request the Codec could not
// decode, counted and observed.
func (s *Server) unreadableDecision(ctx context.Context, reason string) authz.Decision {
	d := authz.Decision{ID: s.unreadable.next(), Code: authz.BadRequest, Reason: ReasonUnreadable}
	if s.metrics != nil {
		s.metrics.unreadable.WithLabelValues(reason).Inc()
	}
	s.core.Refused(ctx, &authz.Request{}, &d)
	return d
}

// unreadableIDs are the decision ids of unreadable requests: a random
// per-server prefix and a counter, like the pipeline's, marked "u".
type unreadableIDs struct {
	once   sync.Once
	prefix string
	n      atomic.Uint64
}

func (u *unreadableIDs) next() string {
	u.once.Do(func() {
		var b [6]byte
		_, _ = rand.Read(b[:])
		u.prefix = hex.EncodeToString(b[:]) + "-u"
	})
	return u.prefix + strconv.FormatUint(u.n.Add(1), 36)
}
