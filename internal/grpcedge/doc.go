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
//     read its responses, and how long a client may withhold flow-control
//     window (grpc-go keeps the answers it cannot send in memory, with no
//     deadline).
//
// It works on the raw connection: Listener wraps each accepted net.Conn
// and follows the HTTP/2 frame headers going each way (a few bytes of
// state; payloads are skipped, except the client's SETTINGS and
// connection WINDOW_UPDATEs). grpc-go's own hooks cannot do this: an
// InTapHandle sees a stream's HEADERS but never its RST_STREAM, and a
// stats.Handler hears of a reset only after the stream's goroutine ran.
// A connection over its reset budget is sent GOAWAY (ENHANCE_YOUR_CALM),
// and closed if it goes on; grpc-go sees the connection end and cleans up
// as for any other.
//
// Config is the server.edge section of the config file those limits come
// from (the program turns it into Options).
//
//	client ─TCP─▶ Listener.Accept ─(cap)─▶ conn{frames in: HEADERS, RST_STREAM} ─▶ grpc-go
//	       ◀──────────────────────────────  conn{frames out, write deadline}   ◀──
package grpcedge
