package telemetry

import (
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
)

// alwaysRedacted are attribute keys never logged with their value.
var alwaysRedacted = []string{"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "token", "credential", "password", "secret"}

// NewRedactingLogger builds a logger like the process's. Any attribute
// whose key (in any group) names a credential carrier has its value
// replaced: a second line of defence, since no code logs credentials on
// purpose.
func NewRedactingLogger(w io.Writer, c LogConfig, credentialKeys []string) *slog.Logger {
	r := &RedactKeys{}
	r.Add(append(append(append([]string{}, alwaysRedacted...), c.Redact...), credentialKeys...))
	return newRedactingLoggerWith(w, c, r)
}

func newRedactingLoggerWith(w io.Writer, c LogConfig, r *RedactKeys) *slog.Logger {
	level, _ := parseLevel(c.Level)
	opts := &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if r.Has(a.Key) {
				return slog.String(a.Key, "[REDACTED]")
			}
			return a
		},
	}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// RedactKeys is the set of attribute keys logged as [REDACTED]. It only
// grows: a reload that adds an authenticator adds its header or cookie
// name, and one that removes it keeps the name redacted.
type RedactKeys struct {
	mu sync.Mutex // serialises Add
	m  atomic.Pointer[map[string]bool]
}

// Add redacts keys (case-insensitively) from now on.
func (r *RedactKeys) Add(keys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := map[string]bool{}
	if cur := r.m.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	for _, k := range keys {
		next[strings.ToLower(k)] = true
	}
	r.m.Store(&next)
}

// Has reports whether key is redacted.
func (r *RedactKeys) Has(key string) bool {
	m := r.m.Load()
	return m != nil && (*m)[strings.ToLower(key)]
}

// ErrorAttrs are the log attributes of a possibly joined error: the whole
// text, and each error on its own, so a rejected config shows every
// mistake, not only the first line a log viewer displays.
func ErrorAttrs(err error) []any {
	list := flattenErrors(err)
	texts := make([]string, len(list))
	for i, e := range list {
		texts[i] = e.Error()
	}
	return []any{"error", err, "error_count", len(texts), "errors", texts}
}

func flattenErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}
