// Package yamlfile loads one YAML config file strictly and reports every
// problem as "file:line: field.path: message".
//
// Decoding rejects unknown fields, suggesting the field meant. After decoding, "${NAME}" in string values
// is replaced from the environment (so a secret never has to be written into
// the file, and line numbers stay those of the file as written). Validation
// errors built with Errorf or Wrap carry a field path; Annotate resolves that
// path to the line it stands on.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is a problem with the value at Path, a dotted field path with
// indexes, e.g. "rules[2].match.path.regex".
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Errorf returns a FieldError for path.
func Errorf(path, format string, args ...any) error {
	return &FieldError{Path: path, Err: fmt.Errorf(format, args...)}
}

// Wrap prefixes the path of every FieldError in err (which may be joined)
// with prefix, so a package can validate its own Config with relative paths
// and its caller can place them. Errors without a path get prefix as theirs.
// Wrap returns nil for a nil err.
func Wrap(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, &FieldError{Path: join(prefix, fe.Path), Err: fe.Err})
			continue
		}
		out = append(out, &FieldError{Path: prefix, Err: e})
	}
	return errors.Join(out...)
}

// Index formats a list element path: Index("rules", 2) is "rules[2]".
func Index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func join(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case strings.HasPrefix(path, "["):
		return prefix + path
	}
	return prefix + "." + path
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// File is a decoded config file; it keeps the node tree to find lines.
type File struct {
	Name string
	root *yaml.Node
}

// Load reads name and decodes it strictly into dst (a pointer to a struct
// with yaml tags), then expands ${NAME} in its string fields with getenv.
// A reference to an unset variable is an error; "$${" stands for a literal
// "${".
func Load(name string, dst any, getenv func(string) string) (*File, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return Decode(name, data, dst, getenv)
}

// Decode is Load for data already read; name is used in messages.
//
// The data is parsed once, into the node tree that gives errors their
// lines; the tree is checked against dst's type (unknown fields with a
// "did you mean", type mismatches) and then decoded into dst. A tree that
// nests deeper than the check walks is decoded from data again by yaml.v3's
// strict decoder, which refuses unknown fields at any depth.
func Decode(name string, data []byte, dst any, getenv func(string) string) (*File, error) {
	f := &File{Name: name}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(name, err)
	}
	f.root = &root
	complete, err := check(name, &root, reflect.TypeOf(dst))
	if err != nil {
		return nil, err
	}
	if err := decode(&root, data, complete, dst); err != nil {
		return nil, fmt.Errorf("%s: %w", name, cleanYAMLError(err))
	}
	if err := expand(reflect.ValueOf(dst), "", getenv); err != nil {
		return nil, f.Annotate(err)
	}
	return f, nil
}

// decode decodes the checked tree root into dst, or data strictly when
// the check was not complete. It is yaml.v3's Decoder.Decode on data
// without parsing again: the decoder parses the first document as
// yaml.Unmarshal did to make root, and decodes it with the same rules
// (unique keys, merges, alias limits); the check has already refused
// every unknown field the decoder's strict mode would.
func decode(root *yaml.Node, data []byte, complete bool, dst any) error {
	if !complete {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}
	if root.Kind == 0 {
		return nil // no document: the decoder's io.EOF
	}
	return root.Decode(dst)
}

// Check reports, without decoding, what Decode would reject in the
// structure of data for the type dst points to: syntax errors, unknown
// fields and values of the wrong type, each as "file:line: field.path:
// message". It lets a package that hands the file to another parser explain
// that parser's complaint.
func Check(name string, data []byte, dst any) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return syntaxError(name, err)
	}
	_, err := check(name, &root, reflect.TypeOf(dst))
	return err
}

// syntaxError puts the line of a YAML syntax error where a reader expects
// it: "file:3: did not find expected key".
func syntaxError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil && line > 0 {
				return fmt.Errorf("%s:%d: %s", name, line, after)
			}
		}
	}
	return fmt.Errorf("%s: %s", name, msg)
}

// cleanYAMLError drops the library's "yaml: unmarshal errors:" preamble so
// messages read "line 7: field colour not found in type ...".
func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(strings.Join(te.Errors, "; "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// Annotate rewrites each FieldError in err as "file:line: path: message",
// using the line where the path's value stands (or its nearest existing
// parent), and joins them. Other errors get the file name only.
func (f *File) Annotate(err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			if line := f.Line(fe.Path); line > 0 {
				out = append(out, fmt.Errorf("%s:%d: %w", f.Name, line, fe))
				continue
			}
		}
		out = append(out, fmt.Errorf("%s: %w", f.Name, e))
	}
	return errors.Join(out...)
}

// Line returns the line of the value at path, or of its deepest ancestor that
// is in the file; 0 when nothing matches.
func (f *File) Line(path string) int {
	if f == nil || f.root == nil {
		return 0
	}
	n := f.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, step := range splitPath(path) {
		next := child(n, step)
		if next == nil {
			break
		}
		n = next
		line = n.Line
	}
	return line
}

func splitPath(path string) []string {
	var steps []string
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			if i < 0 {
				steps = append(steps, part)
				break
			}
			if i > 0 {
				steps = append(steps, part[:i])
			}
			j := strings.IndexByte(part[i:], ']')
			if j < 0 {
				steps = append(steps, part[i:])
				break
			}
			steps = append(steps, part[i:i+j+1])
			part = part[i+j+1:]
		}
	}
	return steps
}

func child(n *yaml.Node, step string) *yaml.Node {
	if strings.HasPrefix(step, "[") {
		i, err := strconv.Atoi(strings.Trim(step, "[]"))
		if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
			return nil
		}
		return n.Content[i]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == step {
			return n.Content[i+1]
		}
	}
	return nil
}

// expand walks v and replaces ${NAME} in every string it holds.
func expand(v reflect.Value, path string, getenv func(string) string) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return expand(v.Elem(), path, getenv)
	case reflect.Struct:
		var errs []error
		t := v.Type()
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			name, inline := yamlName(sf)
			p := path
			if !inline {
				p = join(path, name)
			}
			errs = append(errs, expand(v.Field(i), p, getenv))
		}
		return errors.Join(errs...)
	case reflect.Slice, reflect.Array:
		var errs []error
		for i := range v.Len() {
			errs = append(errs, expand(v.Index(i), Index(path, i), getenv))
		}
		return errors.Join(errs...)
	case reflect.Map:
		if v.Type().Elem().Kind() != reflect.String {
			var errs []error
			for _, k := range v.MapKeys() {
				e := reflect.New(v.Type().Elem()).Elem()
				e.Set(v.MapIndex(k))
				errs = append(errs, expand(e, join(path, fmt.Sprint(k.Interface())), getenv))
				v.SetMapIndex(k, e)
			}
			return errors.Join(errs...)
		}
		var errs []error
		for _, k := range v.MapKeys() {
			s, err := Expand(v.MapIndex(k).String(), getenv)
			if err != nil {
				errs = append(errs, &FieldError{Path: join(path, fmt.Sprint(k.Interface())), Err: err})
				continue
			}
			v.SetMapIndex(k, reflect.ValueOf(s).Convert(v.Type().Elem()))
		}
		return errors.Join(errs...)
	case reflect.String:
		if !v.CanSet() {
			return nil
		}
		s, err := Expand(v.String(), getenv)
		if err != nil {
			return &FieldError{Path: path, Err: err}
		}
		v.SetString(s)
	}
	return nil
}

func yamlName(sf reflect.StructField) (name string, inline bool) {
	tag := sf.Tag.Get("yaml")
	name, opts, _ := strings.Cut(tag, ",")
	if strings.Contains(opts, "inline") {
		return "", true
	}
	if name == "" {
		name = strings.ToLower(sf.Name)
	}
	return name, false
}

// Expand replaces ${NAME} in s with getenv(NAME). An unset or empty variable
// is an error naming it (never its value); "$${" is a literal "${".
func Expand(s string, getenv func(string) string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unterminated ${ in value")
		}
		name := s[i+2 : i+j]
		if !validEnvName(name) {
			return "", fmt.Errorf("invalid environment variable name %q", name)
		}
		val := getenv(name)
		if val == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(s[:i])
		b.WriteString(val)
		s = s[i+j+1:]
	}
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
