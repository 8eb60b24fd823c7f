package ratelimit_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/ratelimit/ratelimittest"
)

type failingStore struct{ err error }

func (s failingStore) Increment(context.Context, []ratelimit.Op) error { return s.err }

func req(domain string, kv ...string) ratelimit.Request {
	d := ratelimit.Descriptor{Hits: 1}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, ratelimit.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return ratelimit.Request{Domain: domain, Descriptors: []ratelimit.Descriptor{d}}
}

func TestFailurePolicies(t *testing.T) {
	boom := errors.New("connection refused")
	reg := prometheus.NewRegistry()
	// "open" and "t429" are defined (without descriptors), so the limit
	// overrides below apply there; "nowhere" is not.
	rules, err := envoyconfig.Parse([]envoyconfig.File{
		{Name: "contract.yaml", Content: []byte(ratelimittest.Limits)},
		{Name: "open.yaml", Content: []byte("domain: open\ndescriptors: []\n")},
		{Name: "t429.yaml", Content: []byte("domain: t429\ndescriptors: []\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	l := ratelimit.New(failingStore{boom}, rules, ratelimit.Options{
		Domains: map[string]ratelimit.FailurePolicy{
			"open":    {Mode: ratelimit.FailOpen},
			"t429":    {Mode: ratelimit.FailClosed, DenyStatus: 429},
			"nowhere": {Mode: ratelimit.FailClosed, DenyStatus: 429},
		},
		Registerer: reg,
	})
	override := func(r ratelimit.Request) ratelimit.Request {
		r.Descriptors[0].Override = &ratelimit.Limit{Requests: 1, Unit: ratelimit.Minute}
		return r
	}
	tests := []struct {
		give     ratelimit.Request
		wantCode ratelimit.Code
		wantOpen bool
	}{
		{req("contract", "user", "a"), ratelimit.Unavailable, false},
		{override(req("open", "k", "v")), ratelimit.OK, true},
		{override(req("t429", "k", "v")), ratelimit.OverLimit, false},
	}
	for _, tt := range tests {
		res, err := l.Check(context.Background(), tt.give)
		if !errors.Is(err, ratelimit.ErrStore) || !errors.Is(err, boom) {
			t.Errorf("%s: err %v", tt.give.Domain, err)
		}
		if res.Code != tt.wantCode || res.FailedOpen != tt.wantOpen || !res.Failed {
			t.Errorf("%s: %+v", tt.give.Domain, res)
		}
	}
	// An override in a domain the rules do not define creates no limit
	// (envoyproxy/ratelimit answers OK with no limit), so the dead store
	// is not asked and its failure policy does not apply.
	if res, err := l.Check(context.Background(), override(req("nowhere", "k", "v"))); err != nil || res.Code != ratelimit.OK || res.Statuses[0].Limit != nil || res.Statuses[0].Remaining != 0 {
		t.Errorf("override in an undefined domain: %+v %v", res, err)
	}
	// Domains the rules define are labelled by name; the others are
	// "other", so callers cannot grow the series without bound.
	for _, c := range []struct {
		domain, code string
		want         float64
	}{
		{"open", "failed_open", 1},
		{"t429", "failed_closed", 1},
		{"contract", "failed_closed", 1},
		{"other", "ok", 1},
	} {
		if got := checksTotal(t, reg, c.domain, c.code); got != c.want {
			t.Errorf("checks_total{domain=%q,code=%q} = %v, want %v", c.domain, c.code, got, c.want)
		}
	}
	// Descriptors that match no limit never need the store, so a dead
	// store does not matter to them.
	if res, err := l.Check(context.Background(), req("contract", "nothing", "x")); err != nil || res.Code != ratelimit.OK {
		t.Errorf("unmatched: %+v %v", res, err)
	}
}

func checksTotal(t *testing.T, reg *prometheus.Registry, domain, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ext_authz_ratelimit_checks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["domain"] == domain && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no checks_total{domain=%q,code=%q}", domain, code)
	return 0
}

func TestCancelledContextFailsClosed(t *testing.T) {
	l := ratelimit.New(memory.New(memory.Options{}), ratelimittest.Rules(t), ratelimit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := l.Check(ctx, req("contract", "user", "a"))
	if err == nil || res.Code != ratelimit.Unavailable {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestHeaders(t *testing.T) {
	perUser := &ratelimit.Limit{Policy: "per-user", Requests: 100, Unit: ratelimit.Minute}
	perSec := &ratelimit.Limit{Policy: `we"ird\`, Requests: 5, Unit: ratelimit.Second}
	all := ratelimit.HeaderOptions{Draft: true, Legacy: true}
	tests := []struct {
		name string
		give ratelimit.Result
		opts ratelimit.HeaderOptions
		want string
	}{
		{"over limit", ratelimit.Result{Code: ratelimit.OverLimit, Statuses: []ratelimit.Status{
			{Code: ratelimit.OK, Limit: perSec, Remaining: 3, ResetAfter: 500 * time.Millisecond},
			{Code: ratelimit.OverLimit, Limit: perUser, Remaining: 0, ResetAfter: 36200 * time.Millisecond},
		}}, all, `retry-after: 37|ratelimit-policy: "per-user";q=100;w=60|ratelimit: "per-user";r=0;t=37|x-ratelimit-limit: 100|x-ratelimit-remaining: 0|x-ratelimit-reset: 37`},
		{"allowed: fewest remaining, escaped name", ratelimit.Result{Statuses: []ratelimit.Status{
			{Limit: perUser, Remaining: 50, ResetAfter: 10 * time.Second},
			{Limit: perSec, Remaining: 3, ResetAfter: time.Second},
			{},
		}}, all, `ratelimit-policy: "we\"ird\\";q=5;w=1|ratelimit: "we\"ird\\";r=3;t=1|x-ratelimit-limit: 5|x-ratelimit-remaining: 3|x-ratelimit-reset: 1`},
		{"legacy only", ratelimit.Result{Statuses: []ratelimit.Status{{Limit: perUser, Remaining: 7, ResetAfter: 2 * time.Second}}},
			ratelimit.HeaderOptions{Legacy: true}, `x-ratelimit-limit: 100|x-ratelimit-remaining: 7|x-ratelimit-reset: 2`},
		{"over limit, no families: Retry-After still", ratelimit.Result{Code: ratelimit.OverLimit, Statuses: []ratelimit.Status{{Code: ratelimit.OverLimit, Limit: perUser, ResetAfter: 2 * time.Second}}},
			ratelimit.HeaderOptions{}, `retry-after: 2`},
		{"no limit", ratelimit.Result{Statuses: []ratelimit.Status{{}}}, all, ``},
		{"unlimited only", ratelimit.Result{Statuses: []ratelimit.Status{{Limit: &ratelimit.Limit{Unlimited: true}}}}, all, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, h := range tt.give.Headers(tt.opts) {
				got = append(got, h.Name+": "+h.Value)
			}
			if s := strings.Join(got, "|"); s != tt.want {
				t.Errorf("got\n %s\nwant\n %s", s, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		give ratelimit.Config
		want string // "" for valid
	}{
		{"defaults", ratelimit.Config{Files: []string{"x.yaml"}}, ""},
		{"timeout", ratelimit.Config{Timeout: time.Minute}, "timeout: 1m0s: must be between 1ms and 10s"},
		{"failure mode", ratelimit.Config{FailureMode: "maybe"}, `failure_mode: "maybe" is not one of deny, allow`},
		{"deny status", ratelimit.Config{DenyStatus: 500}, "deny_status: 500 is not one of 503, 429"},
		{"domain", ratelimit.Config{Domains: map[string]ratelimit.DomainConfig{"api": {DenyStatus: 404}}}, "domains.api.deny_status: 404 is not one of 503, 429"},
		{"hops", ratelimit.Config{XFFNumTrustedHops: -1}, "xff_num_trusted_hops: -1: must be between 0 and 64"},
		{"empty file", ratelimit.Config{Files: []string{""}}, "files[0]: empty path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.give
			c.ApplyDefaults()
			err := yamlfile.Wrap("rate_limit", c.Validate())
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), "rate_limit."+tt.want)):
				t.Fatalf("error %v, want rate_limit.%s", err, tt.want)
			}
		})
	}
}

func TestConfigLimiterOptions(t *testing.T) {
	c := ratelimit.Config{FailureMode: "allow", Domains: map[string]ratelimit.DomainConfig{
		"strict":  {FailureMode: "deny", DenyStatus: 429},
		"inherit": {},
	}}
	c.ApplyDefaults()
	o := c.LimiterOptions()
	if o.Failure.Mode != ratelimit.FailOpen || o.Failure.DenyStatus != 503 {
		t.Errorf("default %+v", o.Failure)
	}
	if p := o.Domains["strict"]; p.Mode != ratelimit.FailClosed || p.DenyStatus != 429 {
		t.Errorf("strict %+v", p)
	}
	if p := o.Domains["inherit"]; p != o.Failure {
		t.Errorf("inherit %+v", p)
	}
	if h := c.HeaderOptions(); !h.Draft || !h.Legacy {
		t.Errorf("headers %+v", h)
	}
}

func TestSetMatcherReload(t *testing.T) {
	l := ratelimit.New(memory.New(memory.Options{}), nil, ratelimit.Options{})
	if res, _ := l.Check(context.Background(), req("contract", "user", "a")); res.Statuses[0].Limit != nil {
		t.Fatal("nil matcher applied a limit")
	}
	l.SetMatcher(ratelimittest.Rules(t))
	if res, _ := l.Check(context.Background(), req("contract", "user", "a")); res.Statuses[0].Limit == nil {
		t.Fatal("reloaded matcher not used")
	}
	// Over the limit and cached locally...
	for range 6 {
		l.Check(context.Background(), req("contract", "user", "b"))
	}
	if res, _ := l.Check(context.Background(), req("contract", "user", "b")); !res.Statuses[0].LocalCache {
		t.Fatalf("not answered from the local cache: %+v", res)
	}
	// ...until a reload, which may have raised the limit.
	l.SetMatcher(ratelimittest.Rules(t))
	if res, _ := l.Check(context.Background(), req("contract", "user", "b")); res.Statuses[0].LocalCache {
		t.Fatalf("local cache survived a reload: %+v", res)
	}
}

type matcherFunc func(domain string, d *ratelimit.Descriptor) *ratelimit.Limit

func (f matcherFunc) Match(domain string, d *ratelimit.Descriptor) *ratelimit.Limit {
	return f(domain, d)
}

// TestLimitWithoutWindowAppliesAsNone: a limit whose unit has no window
// length, from a Matcher or an Override, is neither counted (the store,
// which fails here, is not called) nor enforced, and does not crash.
func TestLimitWithoutWindowAppliesAsNone(t *testing.T) {
	for _, unit := range []ratelimit.Unit{ratelimit.UnitUnknown, ratelimit.Unit(-1), ratelimit.Unit(99)} {
		windowless := &ratelimit.Limit{Policy: "p", Requests: 0, Unit: unit}
		fromMatcher := ratelimit.New(failingStore{errors.New("store called")}, matcherFunc(func(string, *ratelimit.Descriptor) *ratelimit.Limit {
			return windowless
		}), ratelimit.Options{})
		overridden := req("d", "k", "v")
		overridden.Descriptors[0].Override = windowless
		for _, tt := range []struct {
			name string
			l    *ratelimit.Limiter
			give ratelimit.Request
		}{
			{"matcher", fromMatcher, req("d", "k", "v")},
			// A Matcher without HasDomain defines every domain, so the
			// override is read (and found windowless).
			{"override", ratelimit.New(failingStore{errors.New("store called")}, matcherFunc(func(string, *ratelimit.Descriptor) *ratelimit.Limit {
				return nil
			}), ratelimit.Options{}), overridden},
		} {
			res, err := tt.l.Check(context.Background(), tt.give)
			if err != nil {
				t.Fatalf("unit %d, %s: %v", unit, tt.name, err)
			}
			if res.Code != ratelimit.OK || len(res.Statuses) != 1 || !reflect.DeepEqual(res.Statuses[0], ratelimit.Status{}) {
				t.Errorf("unit %d, %s: %+v, want OK with no limit applied", unit, tt.name, res)
			}
		}
	}
}

// TestResultAndStoreMetrics: the descriptor results and store outcomes,
// counted through the children the limiter looks up once, add up per
// label; a second limiter on the same registry counts into the same
// series; a series appears only once it is used.
func TestResultAndStoreMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := ratelimit.Options{Registerer: reg, LocalCacheSize: -1, Timeout: time.Second}
	store := memory.New(memory.Options{})
	a := ratelimit.New(store, ratelimittest.Rules(t), opts)
	b := ratelimit.New(store, ratelimittest.Rules(t), opts)
	dead := ratelimit.New(failingStore{errors.New("down")}, ratelimittest.Rules(t), opts)
	timeout := ratelimit.New(failingStore{context.DeadlineExceeded}, ratelimittest.Rules(t), opts)
	if got := metricValue(t, reg, "ext_authz_ratelimit_descriptors_total", "result", "over_limit"); got != -1 {
		t.Fatalf("over_limit series before any use: %v", got)
	}
	for i := range 7 { // per-user is 5 a minute: 5 ok, then over
		l := a
		if i%2 == 1 {
			l = b
		}
		if _, err := l.Check(context.Background(), req("contract", "user", "metrics")); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = dead.Check(context.Background(), req("contract", "user", "x"))
	_, _ = timeout.Check(context.Background(), req("contract", "user", "x"))
	_, _ = timeout.Check(context.Background(), req("contract", "user", "y"))
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"ext_authz_ratelimit_descriptors_total", "result", "ok", 5},
		{"ext_authz_ratelimit_descriptors_total", "result", "over_limit", 2},
		{"ext_authz_ratelimit_descriptors_total", "result", "unlimited", -1},
		{"ext_authz_ratelimit_store_seconds", "outcome", "ok", 7},
		{"ext_authz_ratelimit_store_seconds", "outcome", "error", 1},
		{"ext_authz_ratelimit_store_seconds", "outcome", "timeout", 2},
	} {
		if got := metricValue(t, reg, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
}

// metricValue is a counter's value, or a histogram's sample count, of the
// series with label=value; -1 when there is no such series.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					if h := m.GetHistogram(); h != nil {
						return float64(h.GetSampleCount())
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}
