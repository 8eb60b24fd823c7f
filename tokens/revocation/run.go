package revocation

import (
	"context"
	"errors"
	"time"
)

// Run loads the store's records, then follows its replay log from the
// position of that load until ctx ends (it returns nil then). A failed
// read is retried from the same position with a backoff of up to a
// second, so a blip loses nothing; a gap in the log (trimmed past the
// position) or a List over its bound takes a new snapshot. Run is meant
// to run once per List.
func (l *List) Run(ctx context.Context) error {
	const maxBackoff = time.Second
	backoff := 50 * time.Millisecond
	var cursor string
	snapshot, reason := true, "start"
	lastSweep := l.opts.Now()
	for ctx.Err() == nil {
		if snapshot {
			start := l.opts.Now()
			dropped := l.dropped.Load()
			cur, err := l.src.Snapshot(ctx, start, l.Apply)
			if err != nil {
				l.failed(ctx, err, &backoff, maxBackoff)
				continue
			}
			l.m.resync(reason)
			cursor, snapshot = cur, false
			if l.dropped.Load() == dropped && l.overflow.Swap(false) {
				l.opts.Logger.Info("revocation records fit in max_records again", "records", l.Len())
			}
			l.markSynced(start)
			continue
		}
		start := l.opts.Now()
		recs, next, err := l.src.Read(ctx, cursor, l.opts.Block)
		switch {
		case errors.Is(err, ErrGap):
			l.opts.Logger.Warn("revocation log trimmed past this replica's position: reloading every record")
			snapshot, reason = true, "gap"
			continue
		case err != nil:
			l.failed(ctx, err, &backoff, maxBackoff)
			continue
		}
		for _, r := range recs {
			l.Apply(r)
		}
		l.m.read(len(recs))
		cursor = next
		backoff = 50 * time.Millisecond
		l.markSynced(start)
		if now := l.opts.Now(); now.Sub(lastSweep) >= l.opts.SweepInterval {
			lastSweep = now
			l.Sweep(now)
			if l.overflow.Load() && l.Len() < l.opts.MaxRecords {
				snapshot, reason = true, "overflow"
			}
		}
	}
	return nil
}

// synced records a read that brought memory up to date as of start.
func (l *List) markSynced(start time.Time) {
	l.synced.Store(start.UnixNano())
	if l.lastErr.Swap(nil) != nil {
		l.opts.Logger.Info("revocation log readable again")
	}
	l.m.setSynced(start)
	l.m.setStale(false)
	l.publishCounts()
}

// failed records a store error and waits before the next try.
func (l *List) failed(ctx context.Context, err error, backoff *time.Duration, maxBackoff time.Duration) {
	if ctx.Err() != nil {
		return
	}
	msg := err.Error()
	if l.lastErr.Swap(&msg) == nil {
		l.opts.Logger.Warn("revocation log unreadable: retrying from the last position", "error", msg)
	}
	l.m.readError()
	s := l.synced.Load()
	l.m.setStale(s == 0 || l.opts.Now().UnixNano()-s > int64(l.opts.MaxStaleness))
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	*backoff = min(*backoff*2, maxBackoff)
}
