package envoyconfig

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	rlconfig "github.com/envoyproxy/ratelimit/src/config"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// explain turns the library's error for file f into one that names the file
// and, when the problem can be found in the YAML, its line and field path.
// The library decides validity; this only finds where its complaint
// points.
func explain(f File, err error) error {
	msg := err.Error()
	var ce rlconfig.RateLimitConfigError
	if errors.As(err, &ce) {
		msg = strings.TrimPrefix(string(ce), f.Name+": ")
	}
	// The library's YAML errors carry Go type names and at most a line,
	// and its unknown-key error neither; the same check as our own
	// config's finds every such problem with its line and path. For a
	// complaint about a value, a misplaced key it finds is the likely
	// cause (a "unit" one level too far out leaves rate_limit without
	// one), so it follows the library's message.
	cerr := yamlfile.Check(f.Name, f.Content, &schemaRoot{})
	if cerr != nil && structural(msg) {
		return cerr
	}
	return errors.Join(locate(f, problemKind(msg), msg), cerr)
}

// structural reports whether the library rejected the file's YAML or its
// keys (rather than a value's meaning).
func structural(msg string) bool {
	return strings.HasPrefix(msg, "error loading config file") ||
		strings.Contains(msg, "unknown key") ||
		strings.Contains(msg, "list of type other than map") ||
		strings.Contains(msg, "key is not of type string") ||
		msg == "error checking config"
}

// schemaRoot mirrors the library's YamlRoot (src/config/config_impl.go),
// field for field, so that yamlfile.Check can name misplaced or misspelt
// keys and mistyped values. It is only consulted once the library has
// rejected a file: the library decides what is valid.
type schemaRoot struct {
	Domain      string             `yaml:"domain"`
	Descriptors []schemaDescriptor `yaml:"descriptors"`
}

type schemaDescriptor struct {
	Key            string             `yaml:"key"`
	Value          string             `yaml:"value"`
	RateLimit      *schemaRateLimit   `yaml:"rate_limit"`
	Descriptors    []schemaDescriptor `yaml:"descriptors"`
	ShadowMode     bool               `yaml:"shadow_mode"`
	QuotaMode      bool               `yaml:"quota_mode"`
	DetailedMetric bool               `yaml:"detailed_metric"`
	ValueToMetric  bool               `yaml:"value_to_metric"`
	ShareThreshold bool               `yaml:"share_threshold"`
}

type schemaRateLimit struct {
	RequestsPerUnit uint32          `yaml:"requests_per_unit"`
	Unit            string          `yaml:"unit"`
	Unlimited       bool            `yaml:"unlimited"`
	Name            string          `yaml:"name"`
	Replaces        []schemaReplace `yaml:"replaces"`
}

type schemaReplace struct {
	Name string `yaml:"name"`
}

// locate returns msg for file f at the first field of kind (a field name
// like "domain", or a problem kind below), or with the file name alone.
func locate(f File, kind, msg string) error {
	var root yaml.Node
	if kind != "" && yaml.Unmarshal(f.Content, &root) == nil && len(root.Content) > 0 {
		w := walker{kind: kind}
		switch kind {
		case "domain":
			w.path, w.line = "domain", lineOf(root.Content[0], "domain")
		case "leaf_type":
			// The library's key check accepts only strings, integers,
			// booleans and nulls as values, and says only "error checking
			// config" otherwise.
			if n, path := oddScalar(root.Content[0], "", 0); n != nil {
				return fmt.Errorf("%s:%d: %s: want a string, an integer or true/false, got %s %s (%s)",
					f.Name, n.Line, path, n.ShortTag(), short(n.Value), msg)
			}
		default:
			w.mapping(root.Content[0], "", true)
		}
		if w.path != "" {
			// Plain text, not a yamlfile.FieldError: the path is in this
			// file, and a caller annotating its own config must not take it
			// for one of its fields.
			return fmt.Errorf("%s:%d: %s: %s", f.Name, w.line, w.path, msg)
		}
	}
	return fmt.Errorf("%s: %s", f.Name, msg)
}

func problemKind(msg string) string {
	switch {
	case strings.Contains(msg, "empty domain"):
		return "domain"
	case strings.Contains(msg, "descriptor has empty key"):
		return "empty_key"
	case strings.Contains(msg, "rate limit unit"):
		return "unit"
	case strings.Contains(msg, "duplicate descriptor composite key"):
		return "duplicate"
	case strings.Contains(msg, "unknown key"):
		return "unknown_key"
	case strings.Contains(msg, "replaces"):
		return "replaces"
	case strings.Contains(msg, "share_threshold"):
		return "share_threshold"
	case msg == "error checking config":
		return "leaf_type"
	}
	return ""
}

var knownKeys = map[string]bool{
	"domain": true, "key": true, "value": true, "descriptors": true, "rate_limit": true,
	"unit": true, "requests_per_unit": true, "unlimited": true, "shadow_mode": true,
	"quota_mode": true, "name": true, "replaces": true, "detailed_metric": true,
	"value_to_metric": true, "share_threshold": true,
}

var units = map[string]bool{"second": true, "minute": true, "hour": true, "day": true, "week": true, "month": true, "year": true}

// walker finds the first node of one problem kind.
type walker struct {
	kind string
	path string
	line int
}

func (w *walker) found(path string, line int) {
	if w.path == "" {
		w.path, w.line = path, line
	}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// mapping visits a mapping node at path; top is the file's root.
func (w *walker) mapping(n *yaml.Node, path string, top bool) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if w.kind == "unknown_key" && !knownKeys[k.Value] {
			w.found(join(path, k.Value), k.Line)
		}
		switch k.Value {
		case "descriptors":
			w.descriptors(v, join(path, "descriptors"))
		case "rate_limit":
			if !top {
				w.rateLimit(v, join(path, "rate_limit"))
			}
		}
	}
}

func (w *walker) descriptors(n *yaml.Node, path string) {
	if n.Kind != yaml.SequenceNode {
		return
	}
	seen := map[string]bool{}
	for i, d := range n.Content {
		p := yamlfile.Index(path, i)
		key, value := scalar(d, "key"), scalar(d, "value")
		switch w.kind {
		case "empty_key":
			if key == "" {
				w.found(p+".key", d.Line)
			}
		case "duplicate":
			fk := key
			if value != "" {
				fk += "_" + value
			}
			if seen[fk] {
				w.found(p+".key", lineOf(d, "key"))
			}
			seen[fk] = true
		case "share_threshold":
			if scalar(d, "share_threshold") == "true" && !strings.HasSuffix(value, "*") && !(value == "" && strings.HasSuffix(key, "*")) {
				w.found(p+".share_threshold", lineOf(d, "share_threshold"))
			}
		}
		w.mapping(d, p, false)
	}
}

func (w *walker) rateLimit(n *yaml.Node, path string) {
	switch w.kind {
	case "unit":
		unit := strings.ToLower(scalar(n, "unit"))
		unlimited := scalar(n, "unlimited") == "true"
		if unlimited == units[unit] {
			w.found(path+".unit", max(lineOf(n, "unit"), n.Line))
		}
	case "replaces":
		if r := childNode(n, "replaces"); r != nil && r.Kind == yaml.SequenceNode {
			name := scalar(n, "name")
			for i, e := range r.Content {
				if v := scalar(e, "name"); v == "" || v == name {
					w.found(yamlfile.Index(path+".replaces", i)+".name", e.Line)
				}
			}
		}
	}
}

// oddScalar finds the first scalar that is not a string, integer, boolean
// or null, with its path.
func oddScalar(n *yaml.Node, path string, depth int) (*yaml.Node, string) {
	if depth > 100 {
		return nil, ""
	}
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str", "!!int", "!!bool", "!!null":
			return nil, ""
		}
		return n, path
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if m, p := oddScalar(n.Content[i+1], join(path, n.Content[i].Value), depth+1); m != nil {
				return m, p
			}
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			if m, p := oddScalar(e, yamlfile.Index(path, i), depth+1); m != nil {
				return m, p
			}
		}
	}
	return nil, ""
}

// short quotes at most the first 10 bytes of a value.
func short(v string) string {
	if len(v) > 10 {
		v = v[:7] + "..."
	}
	return v
}

func childNode(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yaml.Node, key string) string {
	if c := childNode(n, key); c != nil && c.Kind == yaml.ScalarNode {
		return c.Value
	}
	return ""
}

func lineOf(n *yaml.Node, key string) int {
	if c := childNode(n, key); c != nil {
		return c.Line
	}
	return n.Line
}
