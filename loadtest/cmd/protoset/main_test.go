package main

import (
	"bytes"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestSetIsSelfContained checks what k6 needs: the set resolves on its
// own (every import is inside, dependencies first) and defines both
// services with their methods.
func TestSetIsSelfContained(t *testing.T) {
	var out bytes.Buffer
	if err := run(nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(out.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatalf("the set does not resolve on its own: %v", err)
	}
	for _, m := range []protoreflect.FullName{
		"envoy.service.auth.v3.Authorization.Check",
		"envoy.service.ratelimit.v3.RateLimitService.ShouldRateLimit",
	} {
		if _, err := files.FindDescriptorByName(m); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
}

func TestBuildRejectsUnknownService(t *testing.T) {
	if _, err := build(nil, []protoreflect.FullName{"no.such.Service"}); err == nil {
		t.Error("build of an unknown service: no error")
	}
}
