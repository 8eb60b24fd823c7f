package envoyconfig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	pb_struct "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlconfig "github.com/envoyproxy/ratelimit/src/config"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// File is one config file's name (for messages) and content.
type File struct {
	Name    string
	Content []byte
}

// Rules are the limits of a set of files. They are immutable and safe for
// concurrent use; reload by loading new Rules.
type Rules struct {
	cfg     rlconfig.RateLimitConfig
	domains []string
	cache   matchCache
}

// matchCache remembers Match results: GetLimit is a pure function of the
// domain and the descriptor's entries, and costs a dozen allocations, while
// gateways see the same descriptors again and again. It is bounded: when
// full it starts over.
type matchCache struct {
	mu  sync.RWMutex
	m   map[string]*ratelimit.Limit
	max int
}

// noLimit caches "no limit applies".
var noLimit = &ratelimit.Limit{}

func (c *matchCache) get(key []byte) (*ratelimit.Limit, bool) {
	c.mu.RLock()
	l, ok := c.m[string(key)]
	c.mu.RUnlock()
	return l, ok
}

func (c *matchCache) put(key []byte, l *ratelimit.Limit) {
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[string(key)] = l
	c.mu.Unlock()
}

var _ ratelimit.Matcher = (*Rules)(nil)

// Load reads the files (a directory stands for its *.yaml and *.yml files,
// in name order, not recursively) and parses them. As envoyproxy/ratelimit
// does by default, two files may not define the same domain.
func Load(paths []string) (*Rules, error) {
	var files []File
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("rate limit config: %w", err)
		}
		names := []string{p}
		if st.IsDir() {
			names = names[:0]
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("rate limit config: %w", err)
			}
			for _, e := range entries {
				ext := filepath.Ext(e.Name())
				if !e.IsDir() && (ext == ".yaml" || ext == ".yml") && !strings.HasPrefix(e.Name(), ".") {
					names = append(names, filepath.Join(p, e.Name()))
				}
			}
			if len(names) == 0 {
				return nil, fmt.Errorf("rate limit config: %s: no *.yaml or *.yml files", p)
			}
		}
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				return nil, fmt.Errorf("rate limit config: %w", err)
			}
			files = append(files, File{Name: n, Content: data})
		}
	}
	return Parse(files)
}

// Parse parses file contents. Errors name the file, and where they can the
// line and field ("limits.yaml:7: descriptors[0].rate_limit.unit: ...").
func Parse(files []File) (*Rules, error) {
	if len(files) == 0 {
		return nil, errors.New("rate limit config: no files")
	}
	var toLoad []rlconfig.RateLimitConfigToLoad
	var errs []error
	domains := map[string]string{}
	for _, f := range files {
		root, err := toYAML(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := domains[root.Domain]; dup && root.Domain != "" {
			errs = append(errs, locate(f, "domain", fmt.Sprintf("domain %q is also defined in %s", root.Domain, prev)))
			continue
		}
		domains[root.Domain] = f.Name
		toLoad = append(toLoad, rlconfig.RateLimitConfigToLoad{Name: f.Name, ConfigYaml: root})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Load one file at a time first, so an error names its file even when
	// the library's message does not, then all together.
	for i, c := range toLoad {
		if _, err := build([]rlconfig.RateLimitConfigToLoad{c}); err != nil {
			errs = append(errs, explain(files[i], err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg, err := build(toLoad)
	if err != nil {
		return nil, fmt.Errorf("rate limit config: %w", err)
	}
	r := &Rules{cfg: cfg, cache: matchCache{m: map[string]*ratelimit.Limit{}, max: 10000}}
	for d := range domains {
		r.domains = append(r.domains, d)
	}
	sort.Strings(r.domains)
	return r, nil
}

// toYAML runs the library's ConfigFileContentToYaml, turning its panic into
// an error.
func toYAML(f File) (root *rlconfig.YamlRoot, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = explain(f, panicError(p))
		}
	}()
	return rlconfig.ConfigFileContentToYaml(f.Name, string(f.Content)), nil
}

// build runs NewRateLimitConfigImpl, turning its panic into an error.
func build(c []rlconfig.RateLimitConfigToLoad) (cfg rlconfig.RateLimitConfig, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError(p)
		}
	}()
	return rlconfig.NewRateLimitConfigImpl(c, nopStats{}, false), nil
}

func panicError(p any) error {
	switch e := p.(type) {
	case rlconfig.RateLimitConfigError:
		return e
	case error:
		return fmt.Errorf("invalid rate limit config: %w", e)
	}
	return fmt.Errorf("invalid rate limit config: %v", p)
}

// Domains returns the domains the files define, sorted.
func (r *Rules) Domains() []string { return slices.Clone(r.domains) }

// HasDomain reports whether the files define domain.
func (r *Rules) HasDomain(domain string) bool {
	_, ok := slices.BinarySearch(r.domains, domain)
	return ok
}

// Dump is the library's description of the loaded limits, for debugging.
func (r *Rules) Dump() string { return r.cfg.Dump() }

var entryPool = sync.Pool{New: func() any { return new(pbDescriptor) }}

// pbDescriptor is a reusable proto descriptor with its entries.
type pbDescriptor struct {
	d       pb_struct.RateLimitDescriptor
	entries []pb_struct.RateLimitDescriptor_Entry
	ptrs    []*pb_struct.RateLimitDescriptor_Entry
}

// Match returns the limit envoyproxy/ratelimit's GetLimit finds for d in
// domain, or nil. The Limit may be shared with other calls: do not modify
// it.
func (r *Rules) Match(domain string, d *ratelimit.Descriptor) *ratelimit.Limit {
	if len(d.Entries) == 0 {
		return nil
	}
	var buf [256]byte
	key := ratelimit.AppendKey(buf[:0], "", domain, d.Entries, nil, ratelimit.UnitUnknown, 0)
	if l, ok := r.cache.get(key); ok {
		if l == noLimit {
			return nil
		}
		return l
	}
	l := r.match(domain, d)
	if l == nil {
		r.cache.put(key, noLimit)
	} else {
		r.cache.put(key, l)
	}
	return l
}

// match asks the library.
func (r *Rules) match(domain string, d *ratelimit.Descriptor) *ratelimit.Limit {
	p := entryPool.Get().(*pbDescriptor)
	defer entryPool.Put(p)
	p.entries = slices.Grow(p.entries[:0], len(d.Entries))[:len(d.Entries)]
	p.ptrs = p.ptrs[:0]
	for i, e := range d.Entries {
		p.entries[i].Key, p.entries[i].Value = e.Key, e.Value
		p.ptrs = append(p.ptrs, &p.entries[i])
	}
	p.d.Entries = p.ptrs
	rl := r.cfg.GetLimit(context.Background(), domain, &p.d)
	p.d.Entries = nil
	clear(p.entries) // drop references to request values
	if rl == nil || rl.Limit == nil {
		return nil
	}
	unit, ok := unitFromProto(rl.Limit.Unit)
	if !ok && !rl.Unlimited {
		return nil // unreachable: the library rejects files with unknown units
	}
	lm := &ratelimit.Limit{
		Name:      rl.Name,
		Policy:    rl.Name,
		Requests:  rl.Limit.RequestsPerUnit,
		Unit:      unit,
		Unlimited: rl.Unlimited,
		// quota_mode, like shadow_mode, reports over-limit but allows:
		// envoyproxy/ratelimit answers OK for it and only records the
		// violation in dynamic metadata.
		Shadow:       rl.ShadowMode || rl.QuotaMode,
		Replaces:     rl.Replaces,
		SharedValues: rl.ShareThresholdKeyPattern,
	}
	if lm.Policy == "" {
		lm.Policy = policyName(domain, d.Entries)
	}
	return lm
}

// policyName names an unnamed limit by its domain and descriptor keys; never
// by values, which come from the request and may be secrets.
func policyName(domain string, entries []ratelimit.Entry) string {
	n := len(domain)
	for _, e := range entries {
		n += 1 + len(e.Key)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(domain)
	for _, e := range entries {
		b.WriteByte('.')
		b.WriteString(e.Key)
	}
	return b.String()
}

func unitFromProto(u pb.RateLimitResponse_RateLimit_Unit) (ratelimit.Unit, bool) {
	switch u {
	case pb.RateLimitResponse_RateLimit_SECOND:
		return ratelimit.Second, true
	case pb.RateLimitResponse_RateLimit_MINUTE:
		return ratelimit.Minute, true
	case pb.RateLimitResponse_RateLimit_HOUR:
		return ratelimit.Hour, true
	case pb.RateLimitResponse_RateLimit_DAY:
		return ratelimit.Day, true
	case pb.RateLimitResponse_RateLimit_WEEK:
		return ratelimit.Week, true
	case pb.RateLimitResponse_RateLimit_MONTH:
		return ratelimit.Month, true
	case pb.RateLimitResponse_RateLimit_YEAR:
		return ratelimit.Year, true
	}
	return ratelimit.UnitUnknown, false
}
