package filewatch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSettle(t *testing.T) {
	const q = 100 * time.Millisecond
	t0 := time.Unix(1000, 0)
	live := Digests{"c": "1"}
	a, b := Digests{"c": "2"}, Digests{"c": "3"}
	type obs struct {
		cur  Digests
		at   time.Duration
		want bool
	}
	for _, tc := range []struct {
		name  string
		steps []obs
	}{
		{"unchanged never applies", []obs{{live, 0, false}, {live, q, false}, {live, 2 * q, false}}},
		{"stable for a whole interval applies once", []obs{{a, 0, false}, {a, q, true}, {a, 2 * q, false}}},
		{"still changing waits", []obs{{a, 0, false}, {b, q, false}, {a, 2 * q, false}, {a, 3 * q, true}}},
		{"two polls in quick succession are not an interval", []obs{{a, 0, false}, {a, q / 10, false}, {a, q, true}}},
		{"back to the live content cancels", []obs{{a, 0, false}, {live, q, false}, {a, 2 * q, false}, {a, 3 * q, true}}},
		{"a tried content is not retried", []obs{{a, 0, false}, {a, q, true}, {a, 2 * q, false}, {a, 3 * q, false}}},
		{"a new content after a tried one is", []obs{{a, 0, false}, {a, q, true}, {b, 2 * q, false}, {b, 3 * q, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st Settle
			for i, s := range tc.steps {
				if got := st.Observe(s.cur, live, t0.Add(s.at), q); got != s.want {
					t.Fatalf("step %d (%v at %v): apply = %v, want %v", i, s.cur, s.at, got, s.want)
				}
			}
		})
	}
	var st Settle
	st.Observe(a, live, t0, q)
	if !st.Observe(a, live, t0.Add(q), q) {
		t.Fatal("not applied")
	}
	st.Retry()
	st.Observe(a, live, t0.Add(2*q), q)
	if !st.Observe(a, live, t0.Add(3*q), q) {
		t.Error("after Retry, the same content is not tried again")
	}
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDigest(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "keys.yaml")
	write(t, f, "a")
	if Digest(f) != DigestBytes([]byte("a")) {
		t.Error("a file's digest is not that of its bytes")
	}
	if d := Digest(filepath.Join(dir, "missing")); !strings.HasPrefix(d, "unreadable: ") {
		t.Errorf("missing file: %q", d)
	}

	limits := filepath.Join(dir, "limits")
	if err := os.Mkdir(limits, 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(limits, "a.yaml"), "x")
	base := Digest(limits)
	for _, tc := range []struct {
		name    string
		change  func()
		changed bool
	}{
		{"a hidden file is not content", func() { write(t, filepath.Join(limits, ".tmp"), "y") }, false},
		{"a subdirectory is not content", func() { _ = os.Mkdir(filepath.Join(limits, "..2026_11_29"), 0o700) }, false},
		{"a file's content is", func() { write(t, filepath.Join(limits, "a.yaml"), "z") }, true},
		{"a new file is", func() { write(t, filepath.Join(limits, "b.yaml"), "") }, true},
	} {
		tc.change()
		got := Digest(limits)
		if (got != base) != tc.changed {
			t.Errorf("%s: digest changed = %v, want %v", tc.name, got != base, tc.changed)
		}
		base = got
	}
	// A file renamed keeps its content but not its name.
	if err := os.Rename(filepath.Join(limits, "b.yaml"), filepath.Join(limits, "c.yaml")); err != nil {
		t.Fatal(err)
	}
	if Digest(limits) == base {
		t.Error("a rename did not change the directory's digest")
	}
}

func TestAgree(t *testing.T) {
	for _, tc := range []struct {
		d, o Digests
		want bool
	}{
		{Digests{"a": "1"}, Digests{"a": "1"}, true},
		{Digests{"a": "1", "new": "x"}, Digests{"a": "1", "gone": "y"}, true},
		{Digests{"a": "2"}, Digests{"a": "1"}, false},
		{Digests{"a": "1"}, nil, true},
	} {
		if got := tc.d.Agree(tc.o); got != tc.want {
			t.Errorf("%v.Agree(%v) = %v, want %v", tc.d, tc.o, got, tc.want)
		}
	}
}
