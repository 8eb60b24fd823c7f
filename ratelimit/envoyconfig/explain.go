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
	return locate(f, problemKind(msg), msg)
}

// locate returns msg for file f at the first field of kind (a field name
// like "domain", or a problem kind below), or with the file name alone.
func locate(f File, kind, msg string) error {
	var root yaml.Node
	if kind != "" && yaml.Unmarshal(f.Content, &root) == nil && len(root.Content) > 0 {
		w := walker{kind: kind}
		if kind == "domain" {
			w.path, w.line = "domain", lineOf(root.Content[0], "domain")
		} else {
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
