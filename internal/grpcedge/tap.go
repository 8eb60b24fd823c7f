package grpcedge

import (
	"context"
	"time"

	"google.golang.org/grpc/tap"
)

// CallDeadline returns a grpc.InTapHandle that gives each call of the
// given methods that arrives without a deadline one of max: a client that
// opens such a call and never sends its request (or never lets it finish)
// would otherwise hold the stream's goroutine for as long as the
// connection lives. Envoy always sends its ext_authz timeout as the call's
// deadline, so its calls are untouched; the handle runs before grpc-go
// starts the stream's goroutine and costs nothing for them.
func CallDeadline(methods []string, max time.Duration) tap.ServerInHandle {
	bounded := make(map[string]bool, len(methods))
	for _, m := range methods {
		bounded[m] = true
	}
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if max <= 0 || !bounded[info.FullMethodName] {
			return ctx, nil
		}
		if _, ok := ctx.Deadline(); ok {
			return ctx, nil
		}
		bctx, cancel := context.WithTimeout(ctx, max)
		// grpc-go cancels the stream's context (ctx) when the stream
		// ends, which ends bctx and its timer too; cancel then only
		// releases what is left.
		context.AfterFunc(ctx, cancel)
		return bctx, nil
	}
}
