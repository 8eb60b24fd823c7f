package grpcedge_test

import (
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
)

// TestMain fails the run when a goroutine outlives the tests: every
// server, client and reader must have been stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2(grpcproto.Name) }

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }
