package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/cli"
)

// Helpers shared with internal/server's tests (a test package cannot
// import another's): the same dev keys and base config.

func TestCommands(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, io.Discard, os.Getenv); err != nil || !strings.HasPrefix(out.String(), "ext-authz ") {
		t.Errorf("version: %q, %v", out.String(), err)
	}
	err := run(context.Background(), []string{"frobnicate"}, io.Discard, io.Discard, os.Getenv)
	if cli.ExitCode(err) != 2 {
		t.Errorf("unknown command: exit %d (%v), want 2", cli.ExitCode(err), err)
	}
	if err := run(context.Background(), []string{"serve"}, io.Discard, io.Discard, os.Getenv); cli.ExitCode(err) != 2 {
		t.Errorf("serve without --config: %v", err)
	}
	out.Reset()
	// The quickstart config must always be valid (paths are relative to the
	// repository root).
	t.Chdir("../..")
	if err := run(context.Background(), []string{"check-config", "examples/quickstart/config.yaml"}, &out, io.Discard, os.Getenv); err != nil {
		t.Errorf("check-config quickstart: %v", err)
	}
}

// TestConfigErrors runs check-config over one fixture per kind of mistake;
// each fixture's first line says what the error must contain: the file,
// the line and the field path.
func TestConfigErrors(t *testing.T) {
	files, _ := filepath.Glob("testdata/config-errors/*.yaml")
	if len(files) < 10 {
		t.Fatalf("only %d fixtures", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(raw), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be '# want: ...'", f)
			}
			err = run(context.Background(), []string{"check-config", f}, io.Discard, io.Discard, func(string) string { return "" })
			if err == nil {
				t.Fatalf("check-config accepted %s", f)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error:\n  %v\nwant it to contain:\n  %s", err, want)
			}
		})
	}
}
