// Package redisconf is the `redis:` section of the config file, shared by
// the session-token store and the rate limiter, and the one place that
// turns it into a go-redis UniversalClient (standalone, sentinel or
// cluster).
package redisconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// Modes.
const (
	Standalone = "standalone"
	Sentinel   = "sentinel"
	Cluster    = "cluster"
)

// DefaultClusterReloadInterval is the default of
// Config.ClusterReloadInterval: a failed-over master's slots are found on
// the promoted replica within about this long.
const DefaultClusterReloadInterval = 500 * time.Millisecond

// Config says how to reach Redis. The zero value means "no Redis
// configured" (Enabled reports false).
type Config struct {
	// Mode is standalone (default), sentinel or cluster.
	Mode string `yaml:"mode"`
	// Addrs are host:port pairs: the server, the sentinels, or cluster seed
	// nodes.
	Addrs []string `yaml:"addrs"`
	// MasterName is the sentinel master set; required for sentinel.
	MasterName string `yaml:"master_name"`
	Username   string `yaml:"username"`
	// Password is usually "${REDIS_PASSWORD}".
	Password string `yaml:"password"`
	// SentinelPassword authenticates to the sentinels when they need it.
	SentinelPassword string `yaml:"sentinel_password"`
	// DB selects a database (standalone and sentinel only).
	DB  int `yaml:"db"`
	TLS TLS `yaml:"tls"`
	// PoolSize is connections per node; default 10 per CPU (go-redis).
	PoolSize     int `yaml:"pool_size"`
	MinIdleConns int `yaml:"min_idle_conns"`
	// DialTimeout, ReadTimeout, WriteTimeout bound network operations;
	// callers also bound every call with their own context deadline.
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxRetries is go-redis's retry count for a failed command; default 0
	// here, because an authorizer would rather answer than retry.
	MaxRetries int `yaml:"max_retries"`
	// ClusterReloadInterval is how often, under traffic, a cluster client
	// re-reads the slot map; default 500ms. go-redis re-reads it on its own
	// only after a MOVED/ASK reply, and a dead master gives none: after a
	// failover the client would keep sending the dead master's slots to its
	// address (connection refused) until its 60s default interval ran out.
	ClusterReloadInterval time.Duration `yaml:"cluster_reload_interval"`
	// RequiredForReadiness makes /readyz and gRPC health fail while Redis
	// does not answer PING. Off by default: with every replica unready the
	// gateway fails all requests, public ones too, where the per-domain
	// failure modes would have failed only the limited ones.
	RequiredForReadiness bool `yaml:"required_for_readiness"`
}

// TLS configures TLS to Redis.
type TLS struct {
	Enabled bool `yaml:"enabled"`
	// CAFile verifies the server with these CAs instead of the system pool.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile present a client certificate.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether any Redis address is configured.
func (c *Config) Enabled() bool { return len(c.Addrs) > 0 }

// Validate checks the section; an empty section is valid (no Redis).
func (c *Config) Validate() error {
	if !c.Enabled() {
		if c.Mode != "" || c.MasterName != "" {
			return yamlfile.Errorf("addrs", "required when redis is configured")
		}
		return nil
	}
	var errs []error
	switch c.Mode {
	case "", Standalone:
		if len(c.Addrs) != 1 {
			errs = append(errs, yamlfile.Errorf("addrs", "standalone mode takes exactly one address, got %d", len(c.Addrs)))
		}
	case Sentinel:
		if c.MasterName == "" {
			errs = append(errs, yamlfile.Errorf("master_name", "required in sentinel mode"))
		}
	case Cluster:
		if c.DB != 0 {
			errs = append(errs, yamlfile.Errorf("db", "Redis Cluster has only database 0"))
		}
	default:
		errs = append(errs, yamlfile.Errorf("mode", "%q is not one of standalone, sentinel, cluster", c.Mode))
	}
	for i, a := range c.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("addrs", i), "%q is not host:port", a))
		}
	}
	if c.DB < 0 {
		errs = append(errs, yamlfile.Errorf("db", "must not be negative"))
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{{"dial_timeout", c.DialTimeout}, {"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}, {"cluster_reload_interval", c.ClusterReloadInterval}} {
		if d.v < 0 {
			errs = append(errs, yamlfile.Errorf(d.path, "must not be negative"))
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, yamlfile.Errorf("tls", "cert_file and key_file go together"))
	}
	if (c.TLS.CAFile != "" || c.TLS.CertFile != "") && !c.TLS.Enabled {
		errs = append(errs, yamlfile.Errorf("tls.enabled", "set to true when ca_file or cert_file is given"))
	}
	return errors.Join(errs...)
}

// NewClient builds the client. It does not connect: go-redis dials lazily,
// so a Redis that is down at start-up is reported by the first call (and by
// readiness), not by a failed start.
func (c *Config) NewClient() (redis.UniversalClient, error) {
	if !c.Enabled() {
		return nil, errors.New("redis: no addresses configured")
	}
	opts := &redis.UniversalOptions{
		Addrs:            c.Addrs,
		MasterName:       c.MasterName,
		Username:         c.Username,
		Password:         c.Password,
		SentinelPassword: c.SentinelPassword,
		DB:               c.DB,
		PoolSize:         c.PoolSize,
		MinIdleConns:     c.MinIdleConns,
		DialTimeout:      orDefault(c.DialTimeout, time.Second),
		ReadTimeout:      orDefault(c.ReadTimeout, 500*time.Millisecond),
		WriteTimeout:     orDefault(c.WriteTimeout, 500*time.Millisecond),
		MaxRetries:       c.MaxRetries,
		// Honour context deadlines on every call so a stalled Redis costs a
		// Check no more than its own timeout.
		ContextTimeoutEnabled: true,
		IsClusterMode:         c.Mode == Cluster,
		// No CLIENT SETINFO on every new connection: older and managed
		// Redis servers reject it, and it is one more round trip.
		DisableIdentity: true,
		// Maintenance notifications (CLIENT MAINT_NOTIFICATIONS) are a
		// Redis Enterprise feature; elsewhere the probe only fails.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = -1 // go-redis: -1 disables retries; 0 means its default of 3
	}
	if c.TLS.Enabled {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = tc
	}
	switch c.Mode {
	case Sentinel:
		return redis.NewFailoverClient(opts.Failover()), nil
	case Cluster:
		co := opts.Cluster()
		co.ClusterStateReloadInterval = orDefault(c.ClusterReloadInterval, DefaultClusterReloadInterval)
		return redis.NewClusterClient(co), nil
	}
	return redis.NewUniversalClient(opts), nil
}

func (t *TLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis tls ca_file %s: no PEM certificates", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
