package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	_ "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"      // registers the Check service
	_ "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3" // registers ShouldRateLimit
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// services are the ones k6 calls; their files and all imports go in.
var services = []protoreflect.FullName{
	"envoy.service.auth.v3.Authorization",
	"envoy.service.ratelimit.v3.RateLimitService",
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "protoset:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("protoset", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "output file (default: stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	set, err := build(protoregistry.GlobalFiles, services)
	if err != nil {
		return err
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(data)
		return err
	}
	return os.WriteFile(*out, data, 0o644)
}

// build collects the files defining names and their transitive imports,
// dependencies first, as protoc --include_imports does.
func build(files *protoregistry.Files, names []protoreflect.FullName) (*descriptorpb.FileDescriptorSet, error) {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imps := fd.Imports()
		for i := range imps.Len() {
			add(imps.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, n := range names {
		d, err := files.FindDescriptorByName(n)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return nil, errors.New(string(n) + " is not a service")
		}
		add(sd.ParentFile())
	}
	return set, nil
}
