package grpcserver

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type secret struct{ token string }

func TestRecover(t *testing.T) {
	tests := []struct {
		name      string
		give      any
		wantPanic string
	}{
		{name: "string", give: "boom", wantPanic: "boom"},
		{name: "error", give: errors.New("bad state"), wantPanic: "bad state"},
		// A value of any other type is not printed: it may be request data.
		{name: "other", give: secret{token: "s3cret"}, wantPanic: "non-error panic value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, nil))

			_, err := RecoverUnary(logger)(context.Background(), "req", &grpc.UnaryServerInfo{FullMethod: "/a.B/C"},
				func(context.Context, any) (any, error) { panic(tt.give) })
			if status.Code(err) != codes.Internal {
				t.Fatalf("unary err = %v, want Internal", err)
			}
			err = RecoverStream(logger)(nil, nil, &grpc.StreamServerInfo{FullMethod: "/a.B/S"},
				func(any, grpc.ServerStream) error { panic(tt.give) })
			if status.Code(err) != codes.Internal {
				t.Fatalf("stream err = %v, want Internal", err)
			}

			out := logs.String()
			for _, want := range []string{`"msg":"panic in handler"`, `"msg":"panic in stream handler"`, `"method":"/a.B/C"`, `"method":"/a.B/S"`, `"panic":"` + tt.wantPanic + `"`} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %s:\n%s", want, out)
				}
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("log holds the panic value:\n%s", out)
			}
		})
	}
}

func TestRecoverPassesThrough(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	want := status.Error(codes.PermissionDenied, "no")
	resp, err := RecoverUnary(logger)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/a.B/C"},
		func(context.Context, any) (any, error) { return "ok", want })
	if resp != "ok" || !errors.Is(err, want) {
		t.Errorf("unary = %v, %v; want ok, %v", resp, err, want)
	}
	err = RecoverStream(logger)(nil, nil, &grpc.StreamServerInfo{FullMethod: "/a.B/S"},
		func(any, grpc.ServerStream) error { return want })
	if !errors.Is(err, want) {
		t.Errorf("stream = %v, want %v", err, want)
	}
}
