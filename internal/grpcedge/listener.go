package grpcedge

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Options bound each connection; the zero value bounds nothing but
// the early-reset budget, at its defaults.
type Options struct {
	// MaxConnections is the most connections open at once; one more is
	// closed as soon as it is accepted. Zero or negative: no cap.
	MaxConnections int
	// ResetBudget is how many early resets (see EarlyResetWindow) a
	// connection may send; beyond it, a connection whose early resets
	// are more than half of the streams it opened is sent GOAWAY and
	// closed. Envoy resets an ext_authz stream when its own timeout fires
	// or its client goes away: rarely, and (for timeouts) late. Zero:
	// DefaultResetBudget; negative: no budget.
	ResetBudget int
	// EarlyResetWindow is how soon after opening a stream its reset
	// counts as early. Zero: DefaultEarlyResetWindow.
	EarlyResetWindow time.Duration
	// WriteTimeout bounds one write to the connection: a client that does
	// not read its responses fills the socket buffers, the write blocks,
	// and the connection is closed when this passes. Zero: no bound.
	WriteTimeout time.Duration
	// TCPUserTimeout, when positive, is set on each accepted TCP
	// connection: how long sent data may stay unacknowledged before the
	// kernel drops the connection. grpc-go sets it (to the keepalive
	// timeout) only on a bare *net.TCPConn, which a wrapped connection is
	// not, so the listener sets it instead.
	TCPUserTimeout time.Duration
	// Metrics, when set, counts connections, refusals, closes and resets.
	Metrics *Metrics
}

// Defaults of Options.
const (
	DefaultResetBudget      = 100
	DefaultEarlyResetWindow = 100 * time.Millisecond
)

// Listener applies Options to the connections it accepts.
type Listener struct {
	net.Listener
	opts Options
	open atomic.Int64
}

// NewListener wraps l.
func NewListener(l net.Listener, opts Options) *Listener {
	if opts.ResetBudget == 0 {
		opts.ResetBudget = DefaultResetBudget
	}
	if opts.EarlyResetWindow <= 0 {
		opts.EarlyResetWindow = DefaultEarlyResetWindow
	}
	return &Listener{Listener: l, opts: opts}
}

// Accept returns the next connection under the cap. Connections over it
// are closed at once and counted, and Accept waits for the next one.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if max := l.opts.MaxConnections; max > 0 && l.open.Load() >= int64(max) {
			_ = c.Close()
			if m := l.opts.Metrics; m != nil {
				m.refused.Inc()
			}
			continue
		}
		if l.opts.TCPUserTimeout > 0 {
			setTCPUserTimeout(c, l.opts.TCPUserTimeout)
		}
		l.open.Add(1)
		if m := l.opts.Metrics; m != nil {
			m.open.Inc()
		}
		return newConn(c, l), nil
	}
}

// Open is the number of connections open now.
func (l *Listener) Open() int { return int(l.open.Load()) }

func (l *Listener) release() {
	l.open.Add(-1)
	if m := l.opts.Metrics; m != nil {
		m.open.Dec()
	}
}

// ConnectionCap returns the connection cap to use: want, lowered so that
// at least reserve file descriptors stay free under the process's
// RLIMIT_NOFILE for everything else (the admin port, Redis, JWKS fetches,
// files). It fails when the limit leaves no room at all.
func ConnectionCap(want, reserve int) (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	return capFor(want, reserve, lim.Cur)
}

func capFor(want, reserve int, nofile uint64) (int, error) {
	room := int64(min(nofile, 1<<31)) - int64(reserve)
	if room < 1 {
		return 0, fmt.Errorf("RLIMIT_NOFILE %d leaves no descriptors for connections after a reserve of %d: %w", nofile, reserve, errNoRoom)
	}
	if want <= 0 || int64(want) > room {
		return int(room), nil
	}
	return want, nil
}

var errNoRoom = errors.New("file descriptor limit too low")
