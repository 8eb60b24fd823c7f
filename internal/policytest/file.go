package policytest

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/transport"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// File is one test file (docs/policy-testing.md).
type File struct {
	// Config is the config file the tests run against, relative to the
	// test file; `ext-authz test --config` overrides it.
	Config string `yaml:"config"`
	// Paths read the config's absolute file paths from local directories
	// (relative to the test file), as check-config's --map-path:
	// {/etc/ext-authz-keys: ../dev-only-keys}.
	Paths map[string]string `yaml:"paths"`
	// Env are the values of the config's ${NAME} references; a name not
	// here is read from the environment.
	Env map[string]string `yaml:"env"`
	// SigningKeys mint the tests' credentials.
	SigningKeys SigningKeys `yaml:"signing_keys"`
	Tests       []Case      `yaml:"tests"`
}

// SigningKeys are the test keys credentials are minted with. File paths
// are relative to the test file.
type SigningKeys struct {
	JWT       []JWTKey    `yaml:"jwt"`
	UDBTicket []TicketKey `yaml:"udb_ticket"`
}

// JWTKey signs the JWTs of one issuer.
type JWTKey struct {
	Issuer string `yaml:"issuer"`
	File   string `yaml:"file"`
	KID    string `yaml:"kid"`
	// Algorithm defaults from the key (RS256, ES256, EdDSA).
	Algorithm string `yaml:"algorithm"`
	// Audience is the aud of tokens that name none.
	Audience string `yaml:"audience"`
}

// TicketKey signs UDB tickets.
type TicketKey struct {
	KID       string `yaml:"kid"`
	File      string `yaml:"file"`
	Algorithm string `yaml:"algorithm"` // HS256 (default) or EdDSA
}

// Case is one request and what the policy must decide for it.
type Case struct {
	Name    string  `yaml:"name"`
	Request Request `yaml:"request"`
	Expect  Expect  `yaml:"expect"`
}

// Request is a request as the gateway sees it.
type Request struct {
	Method string `yaml:"method"` // default GET
	// URL is the request's absolute URL: scheme, host, path and query.
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
	// ClientAddress is the gateway's direct peer; default 127.0.0.1.
	ClientAddress     string            `yaml:"client_address"`
	ContextExtensions map[string]string `yaml:"context_extensions"`
	// Credential is minted or stored by the harness and put where its
	// authenticator reads it.
	Credential *Credential `yaml:"credential"`
}

// Credential is a credential shortcut: set Authenticator (or let the
// kind pick the only authenticator of that kind) and exactly one kind.
type Credential struct {
	Authenticator string      `yaml:"authenticator"`
	JWT           *JWTSpec    `yaml:"jwt"`
	UDBTicket     *TicketSpec `yaml:"udb_ticket"`
	Session       *Session    `yaml:"session"`
	// APIKey is an API key in clear; the config holds its digest.
	APIKey string `yaml:"api_key"`
	// Value is sent as is (a malformed or foreign credential).
	Value string `yaml:"value"`
}

// JWTSpec is a JWT to mint.
type JWTSpec struct {
	Issuer   string `yaml:"issuer"` // default: the only signing_keys.jwt issuer
	Subject  string `yaml:"subject"`
	Audience string `yaml:"audience"` // default: the key's audience
	Scope    string `yaml:"scope"`    // space-separated
	// Claims are further claims (they may not replace the above).
	Claims map[string]any `yaml:"claims"`
	// ExpiresIn is the lifetime from now; default 1h; negative: expired.
	ExpiresIn time.Duration `yaml:"expires_in"`
}

// TicketSpec is a UDB ticket to mint.
type TicketSpec struct {
	User      string         `yaml:"user"`
	App       string         `yaml:"app"`
	Scopes    []string       `yaml:"scopes"`
	Claims    map[string]any `yaml:"claims"`
	ExpiresIn time.Duration  `yaml:"expires_in"` // default 1h; negative: expired
	KID       string         `yaml:"kid"`        // default: the only signing_keys.udb_ticket key
}

// Session is a UDB session record the harness serves from memory to the
// udb_session authenticator, under a session token it makes up.
type Session struct {
	UserID  string            `yaml:"uid"`
	App     string            `yaml:"app"`
	Scope   string            `yaml:"scope"`
	Revoked bool              `yaml:"revoked"`
	Claims  map[string]string `yaml:"claims"`
	// ExpiresIn sets the record's exp from now (negative: expired); zero:
	// no exp.
	ExpiresIn time.Duration `yaml:"expires_in"`
}

// Expect is what the decision must be; unset fields are not checked.
type Expect struct {
	// Status is the HTTP status the client gets (200 when allowed).
	Status int `yaml:"status"`
	// Code is the decision code: ok, unauthenticated, forbidden,
	// rate_limited, unavailable, bad_request.
	Code   string  `yaml:"code"`
	Reason *string `yaml:"reason"`
	// Rule is the rule that matched; "" for none.
	Rule *string `yaml:"rule"`
	// Subject and Authenticator are the verified identity's; "" for an
	// anonymous decision.
	Subject       *string `yaml:"subject"`
	Authenticator *string `yaml:"authenticator"`
	// UpstreamHeaders must be set on the request sent upstream, with
	// these values; RemovedHeaders must be removed from it.
	UpstreamHeaders map[string]string `yaml:"upstream_headers"`
	RemovedHeaders  []string          `yaml:"removed_headers"`
	// RateLimits is the rate-limit request the rule builds (never sent:
	// tests count nothing).
	RateLimits *ExpectLimits `yaml:"rate_limits"`
}

// ExpectLimits is a rate-limit request; each descriptor is written
// "key=value, key=value" in entry order. No descriptors: the rule sends
// none.
type ExpectLimits struct {
	Domain      string   `yaml:"domain"`
	Descriptors []string `yaml:"descriptors"`
}

var codeNames = []string{"ok", "unauthenticated", "forbidden", "rate_limited", "unavailable", "bad_request"}

// validate checks what can be checked without the config.
func (f *File) validate() error {
	var errs []error
	if len(f.Tests) == 0 {
		errs = append(errs, yamlfile.Errorf("tests", "at least one test is required"))
	}
	for i, k := range f.SigningKeys.JWT {
		p := yamlfile.Index("signing_keys.jwt", i)
		if k.Issuer == "" {
			errs = append(errs, yamlfile.Errorf(p+".issuer", "required"))
		}
		if k.File == "" {
			errs = append(errs, yamlfile.Errorf(p+".file", "required"))
		}
	}
	for i, k := range f.SigningKeys.UDBTicket {
		p := yamlfile.Index("signing_keys.udb_ticket", i)
		if k.KID == "" {
			errs = append(errs, yamlfile.Errorf(p+".kid", "required"))
		}
		if k.File == "" {
			errs = append(errs, yamlfile.Errorf(p+".file", "required"))
		}
	}
	names := map[string]int{}
	for i := range f.Tests {
		errs = append(errs, yamlfile.Wrap(yamlfile.Index("tests", i), f.Tests[i].validate()))
		if j, dup := names[f.Tests[i].Name]; dup && f.Tests[i].Name != "" {
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("tests", i)+".name", "%q is also the name of tests[%d]", f.Tests[i].Name, j))
		}
		names[f.Tests[i].Name] = i
	}
	return errors.Join(errs...)
}

func (c *Case) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, yamlfile.Errorf("name", "required"))
	}
	errs = append(errs, yamlfile.Wrap("request", c.Request.validate()), yamlfile.Wrap("expect", c.Expect.validate()))
	return errors.Join(errs...)
}

func (r *Request) validate() error {
	var errs []error
	u, err := url.Parse(r.URL)
	switch {
	case r.URL == "":
		errs = append(errs, yamlfile.Errorf("url", "required"))
	case err != nil:
		errs = append(errs, yamlfile.Errorf("url", "%v", err))
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		errs = append(errs, yamlfile.Errorf("url", "%q is not an absolute http or https URL", r.URL))
	}
	if r.Method != "" && strings.ContainsAny(r.Method, " \t\r\n") {
		errs = append(errs, yamlfile.Errorf("method", "%q is not a method", r.Method))
	}
	for name := range r.Headers {
		if name == "" || strings.ContainsAny(name, " \t\r\n:") && !strings.HasPrefix(name, ":") {
			errs = append(errs, yamlfile.Errorf("headers", "%q is not a header name", name))
		}
	}
	if a := r.ClientAddress; a != "" {
		if _, err := netip.ParseAddr(a); err != nil {
			errs = append(errs, yamlfile.Errorf("client_address", "%q is not an IP address", a))
		}
	}
	if c := r.Credential; c != nil {
		n := 0
		for _, set := range []bool{c.JWT != nil, c.UDBTicket != nil, c.Session != nil, c.APIKey != "", c.Value != ""} {
			if set {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, yamlfile.Errorf("credential", "set exactly one of jwt, udb_ticket, session, api_key, value"))
		}
		if (c.APIKey != "" || c.Value != "") && c.Authenticator == "" {
			errs = append(errs, yamlfile.Errorf("credential.authenticator", "required with api_key and value"))
		}
	}
	return errors.Join(errs...)
}

func (e *Expect) validate() error {
	var errs []error
	if e.Status == 0 && e.Code == "" && e.Reason == nil && e.Rule == nil && e.Subject == nil && e.Authenticator == nil &&
		e.UpstreamHeaders == nil && e.RemovedHeaders == nil && e.RateLimits == nil {
		errs = append(errs, yamlfile.Errorf("", "expect nothing? set status, code, reason, rule, subject, authenticator, upstream_headers, removed_headers or rate_limits"))
	}
	if e.Status != 0 && !validStatus(e.Status) {
		errs = append(errs, yamlfile.Errorf("status", "%d is not a status a decision has (200, 400, 401, 403, 429, 503)", e.Status))
	}
	if e.Code != "" && !contains(codeNames, e.Code) {
		errs = append(errs, yamlfile.Errorf("code", "%q is not one of %s", e.Code, strings.Join(codeNames, ", ")))
	}
	if l := e.RateLimits; l != nil {
		if len(l.Descriptors) > 0 && l.Domain == "" {
			errs = append(errs, yamlfile.Errorf("rate_limits.domain", "required with descriptors"))
		}
		for i, d := range l.Descriptors {
			if _, err := parseDescriptor(d); err != nil {
				errs = append(errs, yamlfile.Errorf(yamlfile.Index("rate_limits.descriptors", i), "%v", err))
			}
		}
	}
	return errors.Join(errs...)
}

func validStatus(s int) bool {
	for c := authz.OK; c <= authz.BadRequest; c++ {
		if transport.HTTPStatus(c) == s {
			return true
		}
	}
	return false
}

// parseDescriptor reads "key=value, key=value" into its canonical form.
func parseDescriptor(s string) (string, error) {
	parts := strings.Split(s, ",")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || k == "" {
			return "", fmt.Errorf("%q is not key=value, key=value", s)
		}
		out = append(out, k+"="+v)
	}
	return strings.Join(out, ", "), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
