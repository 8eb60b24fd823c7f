// Package grpcserver holds the transport-level parts of a gRPC server
// that are not about authorization: the server metrics interceptor
// (grpc_server_* series under go-grpc-prometheus' names) and the
// interceptors that turn a panicking handler into codes.Internal. Any
// gRPC service the binary serves (ext_authz Check, the rate limit
// service, health) chains them the same way:
//
//	grpc.ChainUnaryInterceptor(m.Unary(), grpcserver.RecoverUnary(logger), ...)
//	grpc.ChainStreamInterceptor(m.Stream(), grpcserver.RecoverStream(logger))
//
// Metrics go first so they see the status a recovered panic gets.
package grpcserver
