package yamlfile

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The strict decoder of yaml.v3 reports unknown fields and type mismatches
// with Go type names and a line but no field path ("field authenticator not
// found in type authz.RuleConfig"). check walks the node tree alongside the
// destination type before decoding and reports each problem as
// "file:line: field.path: message", with a "did you mean" for near-miss
// field names and a hint when a key sits at the wrong indentation.

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType        = reflect.TypeFor[time.Duration]()
	stringType          = reflect.TypeFor[string]()
)

// scope is one struct being checked, kept so a misplaced key can be
// recognised as a field of an enclosing struct.
type scope struct {
	path   string
	fields map[string]reflect.Type
}

type checker struct {
	name string
	errs []error
	// deep is set when the tree nests deeper than the checker walks, so
	// parts of it went unchecked.
	deep      bool
	fieldSets map[reflect.Type]fieldSet
}

func (c *checker) errorf(n *yaml.Node, path, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s:%d: %w", c.name, n.Line, &FieldError{Path: path, Err: fmt.Errorf(format, args...)}))
}

// check reports every unknown field and type mismatch in root against t.
// complete is false when the tree nests too deeply for every part of it
// to be checked.
func check(name string, root *yaml.Node, t reflect.Type) (complete bool, err error) {
	c := &checker{name: name}
	n := root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return true, nil
		}
		n = n.Content[0]
	}
	if n.Kind == 0 {
		return true, nil // an empty file, or only comments: nothing to check
	}
	c.value(n, t, "", nil, 0)
	return !c.deep, errors.Join(c.errs...)
}

func resolve(n *yaml.Node, depth int) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && depth < 100 {
		n = n.Alias
		depth++
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// leaf reports whether t is decoded by yaml.v3 as one value rather than
// walked field by field.
func leaf(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	if t.Implements(unmarshalerType) || pt.Implements(unmarshalerType) {
		return true
	}
	if t.Implements(textUnmarshalerType) || pt.Implements(textUnmarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map, reflect.Array:
		return false
	case reflect.Slice:
		return t.Elem().Kind() == reflect.Uint8
	}
	return true
}

func (c *checker) value(n *yaml.Node, t reflect.Type, path string, outer []scope, depth int) {
	if depth > 100 {
		c.deep = true
		return
	}
	n = resolve(n, depth)
	if n == nil || isNull(n) {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Interface && !t.Implements(unmarshalerType) {
		return
	}
	if leaf(t) {
		c.leaf(n, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			c.errorf(n, path, "want a mapping of fields, got %s", describeNode(n))
			return
		}
		c.structure(n, t, path, outer, depth)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.errorf(n, path, "want a mapping, got %s", describeNode(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolve(n.Content[i], depth)
			p := join(path, k.Value)
			c.leaf(k, t.Key(), p)
			c.value(n.Content[i+1], t.Elem(), p, nil, depth+1)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			c.errorf(n, path, "want a list, got %s", describeNode(n))
			return
		}
		for i, e := range n.Content {
			c.value(e, t.Elem(), Index(path, i), nil, depth+1)
		}
	}
}

// smallMapping is the number of keys up to which structure finds
// duplicates by comparing keys in turn.
const smallMapping = 8

// seenLine returns the line of key's first occurrence among the keys of
// before (a mapping's content before the key), from seen when the mapping
// is long.
func seenLine(seen map[string]int, before []*yaml.Node, key string, depth int) (int, bool) {
	if seen != nil {
		line, ok := seen[key]
		return line, ok
	}
	for j := 0; j+1 < len(before); j += 2 {
		if k := resolve(before[j], depth); k.Value == key && k.ShortTag() != "!!merge" {
			return k.Line, true
		}
	}
	return 0, false
}

// fieldSet is what fields returns, cached per type by the checker.
type fieldSet struct {
	known map[string]reflect.Type
	open  bool
}

func (c *checker) fields(t reflect.Type) fieldSet {
	if fs, ok := c.fieldSets[t]; ok {
		return fs
	}
	known, open := fields(t)
	fs := fieldSet{known: known, open: open}
	if c.fieldSets == nil {
		c.fieldSets = map[reflect.Type]fieldSet{}
	}
	c.fieldSets[t] = fs
	return fs
}

// fields lists a struct's yaml names (following inline structs) and
// whether an inline map accepts any other key.
func fields(t reflect.Type) (map[string]reflect.Type, bool) {
	out := map[string]reflect.Type{}
	open := false
	var walk func(t reflect.Type, depth int)
	walk = func(t reflect.Type, depth int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("yaml")
			if tag == "-" || (!sf.IsExported() && !sf.Anonymous) {
				continue
			}
			name, inline := yamlName(sf)
			if inline && depth < 10 {
				ft := sf.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				switch ft.Kind() {
				case reflect.Struct:
					walk(ft, depth+1)
				case reflect.Map:
					open = true
				}
				continue
			}
			if !sf.IsExported() {
				continue
			}
			out[name] = sf.Type
		}
	}
	walk(t, 0)
	return out, open
}

func (c *checker) structure(n *yaml.Node, t reflect.Type, path string, outer []scope, depth int) {
	fs := c.fields(t)
	known, open := fs.known, fs.open
	here := scope{path: path, fields: known}
	// Keys seen so far, with their lines: a struct's mapping has a few
	// keys, compared in turn; a map only for a long one.
	var seen map[string]int
	if len(n.Content) > 2*smallMapping {
		seen = map[string]int{}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i], depth)
		v := n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			c.merge(v, t, path, outer, depth)
			continue
		}
		if first, dup := seenLine(seen, n.Content[:i], k.Value, depth); dup {
			c.errorf(k, path, "field %q is set twice (first on line %d)", k.Value, first)
			continue
		}
		if seen != nil {
			seen[k.Value] = k.Line
		}
		ft, ok := known[k.Value]
		if !ok {
			if !open {
				c.errorf(k, path, "unknown field %q%s", k.Value, hint(k.Value, here, outer))
			}
			continue
		}
		c.value(v, ft, join(path, k.Value), append(outer, here), depth+1)
	}
}

func (c *checker) merge(v *yaml.Node, t reflect.Type, path string, outer []scope, depth int) {
	v = resolve(v, depth)
	switch v.Kind {
	case yaml.MappingNode:
		c.structure(v, t, path, outer, depth+1)
	case yaml.SequenceNode:
		for _, e := range v.Content {
			c.merge(e, t, path, outer, depth+1)
		}
	}
}

// hint suggests what a user who wrote key at this place meant: a near-miss
// of a field here, a field of a struct nested here (it should be indented
// under that field), or a field of an enclosing struct (indented too far).
func hint(key string, here scope, outer []scope) string {
	if s := closest(key, here.fields); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	names := sortedNames(here.fields)
	for _, name := range names {
		if sub := structOf(here.fields[name]); sub != nil {
			if f, _ := fields(sub); f[key] != nil {
				return fmt.Sprintf(" (%q is a field of %q: indent it under %q)", key, join(here.path, name), name)
			}
		}
	}
	for i := len(outer) - 1; i >= 0; i-- {
		name := key
		if _, ok := outer[i].fields[key]; !ok {
			if name = closest(key, outer[i].fields); name == "" {
				continue
			}
		}
		where := "the top level"
		if outer[i].path != "" {
			where = fmt.Sprintf("%q", outer[i].path)
		}
		return fmt.Sprintf(" (%q is a field of %s: it is indented too far)", name, where)
	}
	if len(names) > 0 {
		return " (known fields: " + strings.Join(names, ", ") + ")"
	}
	return ""
}

func sortedNames(m map[string]reflect.Type) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// structOf returns the struct type a field holds directly or as list
// elements, or nil.
func structOf(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct && !leaf(t) {
		return t
	}
	return nil
}

// closest returns the field name nearest to key: the same ignoring case,
// '-' and '_'; one that key abbreviates at a '_' ("shadow" for
// "shadow_mode"); or one within an edit distance of about a third of its
// length.
func closest(key string, known map[string]reflect.Type) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	best, bestD := "", -1
	for _, name := range sortedNames(known) {
		if norm(name) == norm(key) || (len(key) >= 3 && strings.HasPrefix(name, key+"_")) {
			return name
		}
		d := editDistance(key, name)
		limit := max(1, min(len(key), len(name))/3)
		if d <= limit && (bestD < 0 || d < bestD) {
			best, bestD = name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b in bytes (config keys
// are ASCII); keys longer than 64 bytes are not compared.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// leaf decodes n into a fresh value of t and reports a mismatch in words.
func (c *checker) leaf(n *yaml.Node, t reflect.Type, path string) {
	if t == stringType && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		return // decodes as its value: the common case, without a decoder
	}
	v := reflect.New(t)
	err := n.Decode(v.Interface())
	if err == nil {
		return
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// A custom unmarshaler's own message says what is wrong.
		c.errorf(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	if n.Kind == yaml.ScalarNode && !leafIsStandard(t) {
		c.errorf(n, path, "%s", cleanTypeErrors(te))
		return
	}
	c.errorf(n, path, "want %s, got %s", describeType(t), describeNode(n))
}

// leafIsStandard reports whether t is a kind describeType can put in words.
func leafIsStandard(t reflect.Type) bool {
	if t == durationType {
		return true
	}
	pt := reflect.PointerTo(t)
	if t.Implements(unmarshalerType) || pt.Implements(unmarshalerType) ||
		t.Implements(textUnmarshalerType) || pt.Implements(textUnmarshalerType) {
		return false
	}
	return true
}

// cleanTypeErrors keeps a custom type's messages without yaml.v3's "line N:"
// prefix (the caller states the line).
func cleanTypeErrors(te *yaml.TypeError) string {
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		if rest, ok := strings.CutPrefix(m, "line "); ok {
			if _, after, ok := strings.Cut(rest, ": "); ok {
				m = after
			}
		}
		msgs[i] = m
	}
	return strings.Join(msgs, "; ")
}

func describeType(t reflect.Type) string {
	if t == durationType {
		return `a duration like "250ms"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("an integer (%d bits)", t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a non-negative integer (%d bits)", t.Bits())
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a base64 string"
	}
	return "a " + t.Kind().String()
}

// describeNode names what the file holds: the tag and a short quote of a
// scalar, or "a list" / "a mapping".
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	v := n.Value
	if len(v) > 10 {
		v = v[:7] + "..."
	}
	if n.ShortTag() == "!!str" {
		return fmt.Sprintf("%s %q", n.ShortTag(), v)
	}
	return n.ShortTag() + " " + v
}
