package generation

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/admission"
	"github.com/ext-authz/ext-authz/internal/filewatch"
	"github.com/ext-authz/ext-authz/internal/grpcedge"
	"github.com/ext-authz/ext-authz/internal/redisconf"
	"github.com/ext-authz/ext-authz/internal/telemetry"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
)

// Config is the whole config file. Each section belongs to the package
// that uses it; this file only composes them and checks what crosses
// sections.
type Config struct {
	Server         ServerConfig          `yaml:"server"`
	Admin          AdminConfig           `yaml:"admin"`
	Redis          redisconf.Config      `yaml:"redis"`
	Authenticators []AuthenticatorConfig `yaml:"authenticators"`
	Policy         authz.Config          `yaml:"policy"`
	Telemetry      telemetry.Config      `yaml:"telemetry"`
	RateLimit      ratelimit.Config      `yaml:"rate_limit"`
	// UpstreamAssertion, when present, signs an identity assertion for
	// upstreams (assertion.go).
	UpstreamAssertion *AssertionConfig `yaml:"upstream_assertion"`
	Revocation        RevocationConfig `yaml:"revocation"`
	// PolicyCandidate runs a candidate policy beside Policy (candidate.go).
	PolicyCandidate CandidateConfig `yaml:"policy_candidate"`

	// src is the file it came from, to put lines on later errors; path
	// and sum are its name and the digest of the bytes decoded.
	src       *yamlfile.File
	path, sum string
	// rules is len(Policy.Rules) as decoded: the rules are dropped once
	// compiled, and the start-up and reload summaries still count them.
	rules int
}

type ServerConfig struct {
	// GRPCAddress serves Check, health and reflection. Default ":8888".
	GRPCAddress string `yaml:"grpc_address"`
	// MaxConcurrentStreams bounds streams per connection (Envoy multiplexes
	// every Check of a gateway worker over few connections). Default 1024.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
	// MaxRecvMessageBytes bounds one CheckRequest. Default 1 MiB.
	MaxRecvMessageBytes int `yaml:"max_recv_message_bytes"`
	// MaxConnectionAge makes clients reconnect now and then so new replicas
	// get traffic (Envoy holds HTTP/2 connections for ever). Default 10m; a
	// negative value disables it.
	MaxConnectionAge time.Duration `yaml:"max_connection_age"`
	// Keepalive pings idle connections.
	Keepalive KeepaliveConfig `yaml:"keepalive"`
	// DrainDelay is how long health reports NOT_SERVING before the server
	// stops accepting, so the gateway and Kubernetes stop sending first.
	// Default 5s.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// DrainTimeout bounds how long in-flight calls may finish after that.
	// Default 15s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// ReloadInterval is how often the config file is checked for changes
	// (SIGHUP reloads at once). Default 2s; negative disables polling.
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// Overload bounds the calls decided and waiting at once.
	Overload admission.Config `yaml:"overload"`
	// Edge bounds connections and what each may make the server do.
	Edge grpcedge.Config `yaml:"edge"`
	// HTTPAddress serves Envoy's HTTP ext_authz service (http_service,
	// Istio's envoyExtAuthzHttp) from the same pipeline. Empty (the
	// default): off. See docs/http-transport.md.
	HTTPAddress string `yaml:"http_address"`
	// HTTP bounds the HTTP ext_authz listener.
	HTTP HTTPServerConfig `yaml:"http"`
}

// HTTPServerConfig is server.http.
type HTTPServerConfig struct {
	// PathPrefix is the provider's pathPrefix (Envoy's path_prefix): every
	// check's path starts with it; one that does not is answered 400.
	PathPrefix string `yaml:"path_prefix"`
	// MaxHeaderBytes bounds a check's request line and headers; more is
	// answered 431. Default 64 KiB, above Envoy's default 60 KiB
	// max_request_headers_kb, so whatever the gateway accepted fits.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadHeaderTimeout bounds reading a check's headers. Default 5s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// WriteTimeout bounds a check from its headers to the end of the
	// answer. Default 30s (server.edge.call_deadline bounds the decision).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes a keep-alive connection idle this long. Default 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

type KeepaliveConfig struct {
	Time    time.Duration `yaml:"time"`     // default 30s
	Timeout time.Duration `yaml:"timeout"`  // default 10s
	MinTime time.Duration `yaml:"min_time"` // least interval a client may ping at; default 5s
}

type AdminConfig struct {
	// Address serves /healthz, /readyz, /metrics. Default ":8081".
	Address string `yaml:"address"`
	// Pprof exposes /debug/pprof on the admin address.
	Pprof bool `yaml:"pprof"`
	// Explain serves POST /debug/explain and builds every pipeline with
	// the matchers it needs (authz.Options.Explain). Restart-only.
	Explain bool `yaml:"explain"`
}

func (c *Config) applyDefaults() {
	s := &c.Server
	setDefault(&s.GRPCAddress, ":8888")
	if s.MaxConcurrentStreams == 0 {
		s.MaxConcurrentStreams = 1024
	}
	if s.MaxRecvMessageBytes == 0 {
		s.MaxRecvMessageBytes = 1 << 20
	}
	setDefault(&s.MaxConnectionAge, 10*time.Minute)
	setDefault(&s.Keepalive.Time, 30*time.Second)
	setDefault(&s.Keepalive.Timeout, 10*time.Second)
	setDefault(&s.Keepalive.MinTime, 5*time.Second)
	setDefault(&s.DrainDelay, 5*time.Second)
	setDefault(&s.DrainTimeout, 15*time.Second)
	setDefault(&s.ReloadInterval, 2*time.Second)
	s.Overload.ApplyDefaults()
	s.Edge.ApplyDefaults()
	setDefault(&s.HTTP.MaxHeaderBytes, 64<<10)
	setDefault(&s.HTTP.ReadHeaderTimeout, 5*time.Second)
	setDefault(&s.HTTP.WriteTimeout, 30*time.Second)
	setDefault(&s.HTTP.IdleTimeout, 2*time.Minute)
	setDefault(&c.Admin.Address, ":8081")
	c.Policy.ApplyDefaults()
	c.Telemetry.ApplyDefaults()
	c.RateLimit.ApplyDefaults()
	if c.UpstreamAssertion != nil {
		c.UpstreamAssertion.applyDefaults()
	}
	c.Revocation.applyDefaults()
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// validate checks the sections that live for the process (server, admin,
// redis, telemetry); compile checks the rest, as it builds them. Errors
// carry field paths from the root.
func (c *Config) validate() error {
	return errors.Join(
		yamlfile.Wrap("server", c.Server.validate()),
		yamlfile.Wrap("admin", ValidateAddress("address", c.Admin.Address)),
		yamlfile.Wrap("redis", c.Redis.Validate()),
		yamlfile.Wrap("telemetry", c.Telemetry.Validate()),
	)
}

// validateGeneration checks what a generation is built from: the
// authenticators, the policy over their names, and the rate_limit
// section, and returns the compiled policy: the policy's one compile
// step. Only compile calls it, before it builds anything.
func (c *Config) validateGeneration() (*authz.Policy, error) {
	errs := []error{yamlfile.Wrap("rate_limit", c.RateLimit.Validate())}
	errs = append(errs, c.validateRateLimitBackend())
	errs = append(errs, yamlfile.Wrap("revocation", c.Revocation.validate(c.Redis.Enabled())))
	names := map[string]int{}
	for i := range c.Authenticators {
		a := &c.Authenticators[i]
		p := yamlfile.Index("authenticators", i)
		if j, dup := names[a.Name]; dup && a.Name != "" {
			errs = append(errs, yamlfile.Errorf(p+".name", "%q is also the name of authenticators[%d]", a.Name, j))
		}
		names[a.Name] = i
		errs = append(errs, yamlfile.Wrap(p, a.validate()))
	}
	if c.UpstreamAssertion != nil {
		errs = append(errs, yamlfile.Wrap("upstream_assertion", c.UpstreamAssertion.validate(c.Authenticators, c.Policy.IdentityHeaders)))
	}
	policy, err := authz.Compile(c.Policy, func(n string) bool {
		_, ok := names[n]
		return ok
	})
	errs = append(errs, yamlfile.Wrap("policy", err))
	return policy, errors.Join(errs...)
}

func (s *ServerConfig) validate() error {
	errs := []error{ValidateAddress("grpc_address", s.GRPCAddress), yamlfile.Wrap("overload", s.Overload.Validate())}
	errs = append(errs, yamlfile.Wrap("edge", s.Edge.Validate()))
	if s.HTTPAddress != "" {
		errs = append(errs, ValidateAddress("http_address", s.HTTPAddress))
	}
	if p := s.HTTP.PathPrefix; p != "" && !strings.HasPrefix(p, "/") {
		errs = append(errs, yamlfile.Errorf("http.path_prefix", "%q must start with /", p))
	}
	if s.HTTP.MaxHeaderBytes < 4<<10 {
		errs = append(errs, yamlfile.Errorf("http.max_header_bytes", "%d is too small for a check (at least 4096)", s.HTTP.MaxHeaderBytes))
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{{"http.read_header_timeout", s.HTTP.ReadHeaderTimeout}, {"http.write_timeout", s.HTTP.WriteTimeout}, {"http.idle_timeout", s.HTTP.IdleTimeout}} {
		if d.v < 0 {
			errs = append(errs, yamlfile.Errorf(d.path, "must not be negative"))
		}
	}
	if s.MaxRecvMessageBytes < 4<<10 {
		errs = append(errs, yamlfile.Errorf("max_recv_message_bytes", "%d is too small for a CheckRequest (at least 4096)", s.MaxRecvMessageBytes))
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{
		{"keepalive.time", s.Keepalive.Time}, {"keepalive.timeout", s.Keepalive.Timeout},
		{"keepalive.min_time", s.Keepalive.MinTime}, {"drain_delay", s.DrainDelay},
		{"drain_timeout", s.DrainTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, yamlfile.Errorf(d.path, "must not be negative"))
		}
	}
	return errors.Join(errs...)
}

func ValidateAddress(path, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return yamlfile.Errorf(path, "%q is not host:port (%v)", addr, err)
	}
	return nil
}

// Load reads, decodes strictly, applies defaults and validates a
// config file. Every error names the file, and where it can the line and
// the field.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, getenv)
}

// Parse is Load for bytes already read: a reload parses
// exactly the bytes it hashed.
func Parse(path string, data []byte, getenv func(string) string) (*Config, error) {
	var c Config
	f, err := yamlfile.Decode(path, data, &c, getenv)
	if err != nil {
		return nil, err
	}
	c.src, c.path, c.sum = f, path, filewatch.DigestBytes(data)
	c.rules = len(c.Policy.Rules)
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return nil, f.Annotate(err)
	}
	return &c, nil
}

// Annotate puts the file, line and field on an error found after loading
// (building authenticators, compiling the policy).
func (c *Config) Annotate(err error) error {
	if err == nil || c.src == nil {
		return err
	}
	return c.src.Annotate(err)
}

// compiled drops what only building the service needed, once the policy
// is compiled: the file's YAML node tree (kept to put lines on errors) and
// the policy's rules (the pipeline holds their compiled form). The service
// keeps the rest for what a reload compares. With 10,000 rules the two are
// most of the config's memory (loadtest/RESULTS.md).
func (c *Config) compiled() {
	c.src = nil
	c.Policy.Rules = nil
}

// Describe is the start-up summary for the log: no secrets.
func (c *Config) Describe() []any {
	names := make([]string, len(c.Authenticators))
	for i, a := range c.Authenticators {
		names[i] = fmt.Sprintf("%s(%s via %s)", a.Name, a.kindName(), a.Source.String())
	}
	return []any{
		"grpc_address", c.Server.GRPCAddress,
		"http_address", c.Server.HTTPAddress,
		"admin_address", c.Admin.Address,
		"rules", c.rules,
		"authenticators", names,
		"redis", c.Redis.Enabled(),
	}
}

// restartSetting is a part of the config that a reload does not apply.
type restartSetting struct {
	name string
	// keep puts the running value into next and reports whether next
	// asked for another.
	keep func(next, running *Config) (changed bool)
}

// section is a restartSetting for a whole section.
func section[T any](name string, get func(*Config) *T) restartSetting {
	return restartSetting{name, func(next, running *Config) bool {
		n, r := get(next), get(running)
		changed := !reflect.DeepEqual(*n, *r)
		*n = *r
		return changed
	}}
}

// restartOnly are the settings a reload keeps at their running values
// (declared here once; docs/operations.md lists them): listeners and
// their limits, the admin server, the Redis client (the limiter and
// readiness hold it for the process's life), telemetry (the logger and
// tracer are built before the service), and every rate_limit setting but
// the files and the plans (the limiter and its store live for the
// process; RLS serves it).
var restartOnly = []restartSetting{
	section("server", func(c *Config) *ServerConfig { return &c.Server }),
	section("admin", func(c *Config) *AdminConfig { return &c.Admin }),
	section("redis", func(c *Config) *redisconf.Config { return &c.Redis }),
	section("telemetry", func(c *Config) *telemetry.Config { return &c.Telemetry }),
	{"rate_limit (all but files)", func(next, running *Config) bool {
		n, r := next.RateLimit, running.RateLimit
		files := n.Files
		// Plans, quotas, default_plan and plan_claim are each generation's too
		// (reloaded like the files; the name above predates them).
		plans := n
		n.Files, r.Files = nil, nil
		n.Plans, n.Quotas, n.DefaultPlan, n.PlanClaim = nil, nil, "", ""
		r.Plans, r.Quotas, r.DefaultPlan, r.PlanClaim = nil, nil, "", ""
		// Turning rate limiting on or off is a restart too: the limiter
		// exists, or not, for the process's life.
		changed := !reflect.DeepEqual(n, r) || next.RateLimit.Enabled() != running.RateLimit.Enabled()
		next.RateLimit = running.RateLimit
		if running.RateLimit.Enabled() && len(files) > 0 {
			next.RateLimit.Files = slices.Clone(files)
		}
		next.RateLimit.Plans, next.RateLimit.Quotas = plans.Plans, plans.Quotas
		next.RateLimit.DefaultPlan, next.RateLimit.PlanClaim = plans.DefaultPlan, plans.PlanClaim
		return changed
	}},
}

// KeepRestartOnly applies restartOnly to next and returns the names of the
// settings next wanted changed.
func KeepRestartOnly(next, running *Config) []string {
	var changed []string
	for _, s := range restartOnly {
		if s.keep(next, running) {
			changed = append(changed, s.name)
		}
	}
	return changed
}

// HoldsSource reports whether the config still holds the file's YAML node
// tree, kept to put lines on errors until Compile succeeds.
func (c *Config) HoldsSource() bool { return c.src != nil }

// Sum is the SHA-256 (hex) of the config file's bytes as decoded.
func (c *Config) Sum() string { return c.sum }

// Path is the config file's name.
func (c *Config) Path() string { return c.path }

// CredentialKeys are the header and cookie names the config says carry
// credentials: the logger redacts them.
func (c *Config) CredentialKeys() []string {
	var keys []string
	for _, a := range c.Authenticators {
		for _, k := range []string{a.Source.Header, a.Source.Cookie} {
			if k != "" {
				keys = append(keys, k)
			}
		}
	}
	if c.UpstreamAssertion != nil {
		// A bearer token for its audience until it expires.
		keys = append(keys, c.UpstreamAssertion.Header)
	}
	return keys
}
