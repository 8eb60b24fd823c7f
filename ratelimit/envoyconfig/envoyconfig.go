package envoyconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

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
	// cfg is the library's config: it validated the files, and Dump
	// describes it. Match uses tree, compiled from the same files.
	cfg     rlconfig.RateLimitConfig
	tree    *compiled
	domains []string
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
	roots := make([]*rlconfig.YamlRoot, len(toLoad))
	for i, c := range toLoad {
		roots[i] = c.ConfigYaml
	}
	r := &Rules{cfg: cfg, tree: compile(roots)}
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

// Match returns the limit envoyproxy/ratelimit's GetLimit finds for d in
// domain, or nil (see compiled for how). The Limit may be shared with
// other calls: do not modify it.
func (r *Rules) Match(domain string, d *ratelimit.Descriptor) *ratelimit.Limit {
	return r.tree.match(domain, d.Entries)
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
