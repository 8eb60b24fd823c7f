package redis

import (
	"context"
	"slices"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// ExecBatch sends the calls in one shared pipeline, as a Run worker does
// with the calls it drained, and answers each call's error; on success the
// counts and decisions are in the ops. Tests use it to build batches of
// many calls deterministically.
func (s *Store) ExecBatch(ctx context.Context, calls [][]ratelimit.Op) []error {
	cs := make([]*call, len(calls))
	for i, ops := range calls {
		c := &call{ctx: ctx, ops: ops, done: make(chan struct{}, 1)}
		n := 0
		for j := range ops {
			n += results(&ops[j])
		}
		c.res = slices.Grow(c.res, n)[:n]
		cs[i] = c
	}
	if len(cs) > 0 {
		s.exec(ctx, cs)
	}
	errs := make([]error, len(cs))
	for i, c := range cs {
		errs[i] = s.finish(c, calls[i])
	}
	return errs
}

// ScriptSources are the counter scripts' bodies: script (one counter) and
// batchScript (every counter of a pipeline).
var ScriptSources = [2]string{scriptSrc, batchScriptSrc}
