package grpcedge

import (
	"errors"
	"time"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// Config is the server.edge section: what one client may make the gRPC
// port do below the RPC layer (see RESILIENCE.md). Its zero value, after
// ApplyDefaults, is the documented defaults.
type Config struct {
	// MaxConnections bounds open connections on the gRPC port; one more
	// is closed at once and counted. It is lowered, at start, to leave
	// FDReserve descriptors under RLIMIT_NOFILE. Default 2048: a gateway
	// opens about one per Envoy worker, and an idle connection costs
	// 10–30 KiB of the pod's 256 MiB; negative: only the descriptor limit
	// bounds it.
	MaxConnections int `yaml:"max_connections"`
	// FDReserve is the descriptors kept free for everything else: admin
	// and health probes, Redis, JWKS fetches, files. Default 256.
	FDReserve int `yaml:"fd_reserve"`
	// HandshakeTimeout bounds a new connection's HTTP/2 handshake (the
	// client preface and SETTINGS; grpc-go's default is 120s). Default 5s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxConnectionIdle closes (GOAWAY) a connection with no call for this
	// long: one that answers pings but never calls otherwise lives until
	// max_connection_age. Default 2m; negative disables it.
	MaxConnectionIdle time.Duration `yaml:"max_connection_idle"`
	// CallDeadline is the deadline of a Check or ShouldRateLimit call that
	// arrives without one (Envoy always sends its ext_authz timeout): a
	// call whose request never comes ends then instead of holding its
	// goroutine for the connection's life. Default 30s; negative
	// disables it.
	CallDeadline time.Duration `yaml:"call_deadline"`
	// WriteTimeout closes a connection whose client stops reading: a
	// write blocked this long, or the connection's flow-control window
	// left under 16 KiB this long (grpc-go would keep the answers in
	// memory). Default 10s; negative disables it.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// StreamResetBudget is how many streams a connection may reset within
	// EarlyResetWindow of opening them; beyond it, while such resets are
	// more than half of its streams, it is sent GOAWAY (ENHANCE_YOUR_CALM),
	// and closed if it goes on (the HTTP/2 rapid reset attack). A client
	// that honours the GOAWAY, as Envoy does, finishes its calls in flight
	// on it and opens a new connection: nothing fails. Envoy's own resets
	// (its timeout firing, its client leaving) are late or rare, but a
	// gateway passes its clients' rapid resets on. Default 100; negative
	// disables it.
	StreamResetBudget int `yaml:"stream_reset_budget"`
	// AbuseCooldown: after a connection is closed for going on with
	// early resets after its GOAWAY, new connections from its address are
	// refused this long, so the attacker cannot simply reconnect for
	// another budget. Envoy honours GOAWAY and is never closed, so never
	// cooled down. Default 2s; negative disables it.
	AbuseCooldown time.Duration `yaml:"abuse_cooldown"`
	// EarlyResetWindow: a reset this soon after the stream opened counts
	// against the budget. Keep it well under Envoy's ext_authz timeout.
	// Default 100ms.
	EarlyResetWindow time.Duration `yaml:"early_reset_window"`
}

// ApplyDefaults fills in unset (zero) fields.
func (c *Config) ApplyDefaults() {
	setDefault(&c.MaxConnections, 2048)
	setDefault(&c.FDReserve, 256)
	setDefault(&c.HandshakeTimeout, 5*time.Second)
	setDefault(&c.MaxConnectionIdle, 2*time.Minute)
	setDefault(&c.WriteTimeout, 10*time.Second)
	setDefault(&c.CallDeadline, 30*time.Second)
	setDefault(&c.StreamResetBudget, DefaultResetBudget)
	setDefault(&c.EarlyResetWindow, DefaultEarlyResetWindow)
	setDefault(&c.AbuseCooldown, 2*time.Second)
}

// Validate checks the section; paths are relative to it.
func (c *Config) Validate() error {
	var errs []error
	if c.FDReserve < 0 {
		errs = append(errs, yamlfile.Errorf("fd_reserve", "must not be negative"))
	}
	if c.HandshakeTimeout < 0 {
		errs = append(errs, yamlfile.Errorf("handshake_timeout", "must not be negative"))
	}
	if c.EarlyResetWindow < 0 {
		errs = append(errs, yamlfile.Errorf("early_reset_window", "must not be negative"))
	}
	return errors.Join(errs...)
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
