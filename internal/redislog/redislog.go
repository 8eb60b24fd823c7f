// Package redislog sends go-redis's own log lines (pool and dial trouble)
// to a slog.Logger, at most one per message kind every Every: while Redis
// is down go-redis logs every failed dial, hundreds of lines a second, and
// the Redis metrics already count each failure. go-redis has only a global
// logger: install it once with redis.SetLogger(redislog.New(logger)).
package redislog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Every is how often one kind of message (one format string) is logged.
const Every = 10 * time.Second

// Logger implements go-redis's internal.Logging.
type Logger struct {
	logger *slog.Logger
	every  time.Duration

	mu   sync.Mutex
	last map[string]*state // keyed by format: go-redis has a few dozen
}

type state struct {
	at         time.Time
	suppressed int
}

// New returns a logger writing to logger at Warn.
func New(logger *slog.Logger) *Logger {
	return &Logger{logger: logger, every: Every, last: map[string]*state{}}
}

// Printf logs the message unless one of its kind was logged less than
// Every ago; the line it writes counts the ones held back.
func (l *Logger) Printf(ctx context.Context, format string, v ...any) {
	now := time.Now()
	l.mu.Lock()
	st := l.last[format]
	if st == nil {
		st = &state{}
		l.last[format] = st
	}
	if !st.at.IsZero() && now.Sub(st.at) < l.every {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.at, st.suppressed = now, 0
	l.mu.Unlock()
	l.logger.WarnContext(ctx, "redis client", "message", fmt.Sprintf(format, v...), "suppressed", suppressed)
}
