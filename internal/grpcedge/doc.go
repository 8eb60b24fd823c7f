// Package grpcedge bounds what one client can make the gRPC server do
// below the RPC layer, where grpc-go offers no limit of its own:
//
//   - how many connections are open at once (Listener refuses beyond
//     Options.MaxConnections, which ConnectionCap keeps below the process's
//     file descriptor limit so the admin port, Redis and JWKS fetches
//     still get descriptors);
//   - how many streams a connection may reset right after opening them
//     (the HTTP/2 "rapid reset" pattern, CVE-2023-44487: each reset stream
//     costs the server a goroutine and a decode, the client two tiny
//     frames, and resets do not count against max_concurrent_streams);
//   - how long a connection's writes may block on a client that does not
//     read its responses.
//
// It works on the raw connection: Listener wraps each accepted net.Conn
// and follows the HTTP/2 frame headers going each way (a few bytes of
// state, no payload is parsed or copied). A connection over its reset
// budget is sent GOAWAY (ENHANCE_YOUR_CALM) and closed; grpc-go sees the
// connection end and cleans up as for any other.
//
//	client ─TCP─▶ Listener.Accept ─(cap)─▶ conn{frames in: HEADERS, RST_STREAM} ─▶ grpc-go
//	       ◀──────────────────────────────  conn{frames out, write deadline}   ◀──
package grpcedge
