package generation

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
)

// PathMap reads a config's absolute file paths from local directories, so
// check-config can check a config written for the cluster's mounts
// (/etc/ext-authz-keys/...) on a workstation.
type PathMap struct {
	// maps are FROM=TO prefixes, tried in order.
	maps [][2]string
	// BaseDir, when set, prefixes every absolute path no map matched.
	BaseDir string
}

func (m *PathMap) String() string { return fmt.Sprint(m.maps) }

// Set adds one FROM=TO (the --map-path flag).
func (m *PathMap) Set(v string) error {
	from, to, ok := strings.Cut(v, "=")
	if !ok || !filepath.IsAbs(from) || to == "" {
		return fmt.Errorf("%q is not FROM=TO with an absolute FROM", v)
	}
	m.maps = append(m.maps, [2]string{filepath.Clean(from), to})
	return nil
}

// remap is the local path for an absolute path p.
func (m *PathMap) remap(p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	clean := filepath.Clean(p)
	for _, fm := range m.maps {
		if rel, err := filepath.Rel(fm[0], clean); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			out := filepath.Join(fm[1], rel)
			if strings.HasSuffix(p, "/") {
				out += "/" // a directory of rate-limit files stays one
			}
			return out
		}
	}
	if m.BaseDir != "" {
		out := filepath.Join(m.BaseDir, clean)
		if strings.HasSuffix(p, "/") {
			out += "/"
		}
		return out
	}
	return p
}

// Apply rewrites every file field of cfg.
func (m *PathMap) Apply(cfg *Config) {
	if len(m.maps) == 0 && m.BaseDir == "" {
		return
	}
	remapFileFields(reflect.ValueOf(cfg).Elem(), m.remap)
}

// isFileField reports whether a yaml key names a file path: file, files,
// and any *_file or *_files.
func isFileField(key string) bool {
	return key == "file" || key == "files" || strings.HasSuffix(key, "_file") || strings.HasSuffix(key, "_files")
}

// remapFileFields applies f to every string (or []string) field whose yaml
// key isFileField, anywhere under v.
func remapFileFields(v reflect.Value, f func(string) string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			remapFileFields(v.Elem(), f)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			key, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			fv := v.Field(i)
			if isFileField(key) {
				switch {
				case fv.Kind() == reflect.String:
					fv.SetString(f(fv.String()))
					continue
				case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
					for j := range fv.Len() {
						fv.Index(j).SetString(f(fv.Index(j).String()))
					}
					continue
				}
			}
			remapFileFields(fv, f)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			remapFileFields(v.Index(i), f)
		}
	case reflect.Map:
		// Map values are not addressable; no file field lives in a map.
	}
}
