package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/internal/cli"
)

// The fresh-clone walk-through, checked: the docs mark the quickstart's
// commands and the outputs they show, and this test runs the commands in
// order against the quickstart server and compares.
//
// Marker convention (in README.md or any docs/*.md), an HTML comment on
// the line before a fenced block:
//
//	<!-- quickstart-commands -->      the block's `go run ./cmd/ext-authz ARGS`
//	                                  lines are run in order (others skipped)
//	<!-- quickstart-output: ARGS -->  the block is what `ext-authz ARGS`
//	                                  prints on stdout; ARGS must be one of
//	                                  the marked commands, quoted the same
//
// The server is the README's `serve --config examples/quickstart/config.yaml`
// on free ports (EXT_AUTHZ_* overrides). Values that differ on every run
// are compared as placeholders: decision ids, request ids, and rate-limit
// reset times.

const (
	markCommands = "<!-- quickstart-commands -->"
	markOutput   = "<!-- quickstart-output:"
)

// docBlock is a fenced block after a marker.
type docBlock struct {
	file string
	line int
	args string // for an output block
	body []string
}

// markedBlocks reads the fenced blocks after markers in path.
func markedBlocks(t *testing.T, path string) (commands, outputs []docBlock) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		isCmd := l == markCommands
		args, isOut := strings.CutPrefix(l, markOutput)
		if !isCmd && !isOut {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			t.Fatalf("%s:%d: a quickstart marker must be followed by a fenced block", path, i+1)
		}
		b := docBlock{file: path, line: i + 1, args: strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(args), "-->"))}
		j := i + 2
		for ; j < len(lines) && !strings.HasPrefix(lines[j], "```"); j++ {
			b.body = append(b.body, lines[j])
		}
		if j == len(lines) {
			t.Fatalf("%s:%d: unterminated block", path, i+1)
		}
		if isCmd {
			commands = append(commands, b)
		} else {
			outputs = append(outputs, b)
		}
		i = j
	}
	return commands, outputs
}

// shellWords splits a command line as sh would for plain words and '...'
// or "..." quoting (no escapes or expansions: the docs use none).
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c in %q", c, s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			i = len(s) // a comment
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

var volatile = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`decision=\S+`), "decision=<id>"},
	{regexp.MustCompile(`"request_id":"[^"]*"`), `"request_id":"<id>"`},
	{regexp.MustCompile(`;t=\d+`), ";t=<s>"},
	{regexp.MustCompile(`(x-ratelimit-reset:) \d+`), "$1 <s>"},
	{regexp.MustCompile(`reset=\S+`), "reset=<d>"},
}

func normalise(lines []string) string {
	s := strings.TrimRight(strings.Join(lines, "\n"), "\n")
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.repl)
	}
	return s
}

func TestQuickstartWalkthrough(t *testing.T) {
	root := "../.."
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	docs = append([]string{filepath.Join(root, "README.md")}, docs...)
	var commands, outputs []docBlock
	for _, d := range docs {
		c, o := markedBlocks(t, d)
		commands, outputs = append(commands, c...), append(outputs, o...)
	}
	if len(commands) == 0 || len(outputs) == 0 {
		t.Fatalf("no %q block or no %q block in %v", markCommands, markOutput, docs)
	}

	p := startQuickstart(t)
	env := []string{cli.EnvGRPCAddress + "=" + p.GRPCAddr, cli.EnvAdminAddress + "=" + p.AdminAddr}
	got := map[string]string{} // args as written → stdout
	ran := 0
	for _, b := range commands {
		for n, line := range b.body {
			args, ok := strings.CutPrefix(strings.TrimSpace(line), "go run ./cmd/ext-authz ")
			if !ok {
				continue
			}
			if i := strings.Index(args, " #"); i >= 0 {
				args = args[:i]
			}
			args = strings.TrimSpace(args)
			words, err := shellWords(args)
			if err != nil {
				t.Fatalf("%s:%d: %v", b.file, b.line+1+n, err)
			}
			if len(words) > 0 && words[0] == "serve" {
				continue // the server is running already
			}
			out, errOut, code := runBin(t, root, env, words...)
			if code != 0 && code < 3 {
				t.Errorf("%s:%d: ext-authz %s: exit %d\n%s", b.file, b.line+1+n, args, code, errOut)
			}
			got[args] = out
			ran++
		}
	}
	if ran == 0 {
		t.Fatal("the marked command blocks hold no `go run ./cmd/ext-authz` line")
	}
	for _, b := range outputs {
		out, ok := got[b.args]
		if !ok {
			t.Errorf("%s:%d: output of %q, which no marked command block runs", b.file, b.line, b.args)
			continue
		}
		if want, have := normalise(b.body), normalise(strings.Split(out, "\n")); want != have {
			t.Errorf("%s:%d: `ext-authz %s` prints\n%s\n\nthe docs show\n%s", b.file, b.line, b.args, have, want)
		}
	}
}

func TestShellWords(t *testing.T) {
	for _, tt := range []struct {
		give string
		want []string
	}{
		{"check --url https://x/", []string{"check", "--url", "https://x/"}},
		{"check -H 'x-api-key: a b' -H \"c: d\"", []string{"check", "-H", "x-api-key: a b", "-H", "c: d"}},
		{"a  b # comment", []string{"a", "b"}},
		{"a'b'c", []string{"abc"}},
	} {
		got, err := shellWords(tt.give)
		if err != nil || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("%q: %q, %v", tt.give, got, err)
		}
	}
	if _, err := shellWords("a 'b"); err == nil {
		t.Error("unterminated quote accepted")
	}
}
