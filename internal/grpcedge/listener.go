package grpcedge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
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
	// AbuseCooldown is how long new connections from an address are
	// refused after one of its connections was closed for going on with
	// early resets after its GOAWAY. Without it the attacker just
	// reconnects and spends another budget; a client that honours GOAWAY
	// (Envoy) is never closed, so never cooled down. Zero or negative:
	// none.
	AbuseCooldown time.Duration
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

	mu        sync.Mutex
	coolUntil map[netip.Addr]time.Time // addresses in AbuseCooldown
}

// maxCooling bounds the addresses remembered for AbuseCooldown; when it
// is full of live entries, a new abuser is not remembered (and only its
// connections' own budgets bound it).
const maxCooling = 4096

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
				m.refusedLimit.Inc()
			}
			continue
		}
		if l.cooling(c.RemoteAddr()) {
			_ = c.Close()
			if m := l.opts.Metrics; m != nil {
				m.refusedCooldown.Inc()
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

// addrOf is the IP of a TCP address; ok is false for anything else.
func addrOf(a net.Addr) (netip.Addr, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	return ip.Unmap(), ok
}

// coolDown refuses addr's new connections for AbuseCooldown.
func (l *Listener) coolDown(a net.Addr) {
	ip, ok := addrOf(a)
	if !ok || l.opts.AbuseCooldown <= 0 {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.coolUntil == nil {
		l.coolUntil = map[netip.Addr]time.Time{}
	}
	if len(l.coolUntil) >= maxCooling {
		for k, until := range l.coolUntil {
			if now.After(until) {
				delete(l.coolUntil, k)
			}
		}
		if len(l.coolUntil) >= maxCooling {
			return
		}
	}
	l.coolUntil[ip] = now.Add(l.opts.AbuseCooldown)
}

// cooling reports whether addr is in its AbuseCooldown.
func (l *Listener) cooling(a net.Addr) bool {
	if l.opts.AbuseCooldown <= 0 {
		return false
	}
	ip, ok := addrOf(a)
	if !ok {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.coolUntil[ip]
	if ok && time.Now().After(until) {
		delete(l.coolUntil, ip)
		return false
	}
	return ok
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
