package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// root is the repository root, relative to this package.
const root = "../.."

// configDirs hold the structs the config file decodes into (the file's
// sections and every type they contain). ratelimit/envoyconfig is not one:
// its yaml types describe envoyproxy/ratelimit's files, documented there.
var configDirs = []string{
	"internal/generation",
	"internal/telemetry",
	"authz",
	"tokens",
	"ratelimit",
	"internal/redisconf",
	"internal/admission",
	"internal/decisionlog",
	"internal/grpcedge",
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goFiles parses the non-test Go files of dir.
func goFiles(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return out
}

// yamlField is one struct field the config decodes.
type yamlField struct {
	dir, typ, field, tag string
}

// yamlFields lists the yaml-tagged fields of every struct type declared in
// dir (named types and the anonymous structs inside them).
func yamlFields(t *testing.T, dir string) []yamlField {
	t.Helper()
	var out []yamlField
	for _, f := range goFiles(t, dir) {
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			ast.Inspect(ts.Type, func(n ast.Node) bool {
				st, ok := n.(*ast.StructType)
				if !ok {
					return true
				}
				for _, fl := range st.Fields.List {
					if fl.Tag == nil {
						continue
					}
					raw, err := strconv.Unquote(fl.Tag.Value)
					if err != nil {
						t.Fatalf("%s.%s: tag %s: %v", dir, ts.Name.Name, fl.Tag.Value, err)
					}
					name, _, _ := strings.Cut(reflect.StructTag(raw).Get("yaml"), ",")
					if name == "" || name == "-" {
						continue
					}
					field := "(embedded)"
					if len(fl.Names) > 0 {
						field = fl.Names[0].Name
					}
					out = append(out, yamlField{dir, ts.Name.Name, field, name})
				}
				return true
			})
			return false
		})
	}
	return out
}

var (
	fence      = regexp.MustCompile("(?ms)^```[^\n]*\n.*?^```")
	inlineCode = regexp.MustCompile("`[^`\n]+`")
	identifier = regexp.MustCompile(`[A-Za-z0-9_]+`)
)

// codeWords are the identifiers inside the code spans and code blocks of a
// Markdown text: where a field name is written as a field name, not as a
// word of prose.
func codeWords(md string) map[string]bool {
	words := map[string]bool{}
	add := func(s string) {
		for _, w := range identifier.FindAllString(s, -1) {
			words[w] = true
		}
	}
	for _, b := range fence.FindAllString(md, -1) {
		add(b)
	}
	for _, c := range inlineCode.FindAllString(fence.ReplaceAllString(md, ""), -1) {
		add(c)
	}
	return words
}

// TestDocsListEveryConfigField: every yaml field of the config structs is
// named in docs/configuration.md, in a table's code span or a YAML example.
func TestDocsListEveryConfigField(t *testing.T) {
	words := codeWords(read(t, "docs/configuration.md"))
	var n int
	for _, dir := range configDirs {
		for _, f := range yamlFields(t, dir) {
			n++
			if !words[f.tag] {
				t.Errorf("docs/configuration.md does not name %q (%s: %s.%s)", f.tag, f.dir, f.typ, f.field)
			}
		}
	}
	// The config has well over a hundred fields; far fewer means the
	// parsing above stopped finding them, not that the docs are complete.
	if n < 120 {
		t.Fatalf("found only %d yaml fields in %v", n, configDirs)
	}
}

func TestCodeWords(t *testing.T) {
	for _, tc := range []struct {
		give string
		word string
		want bool
	}{
		{"the `max_keys` field", "max_keys", true},
		{"max_keys in prose", "max_keys", false},
		{"```yaml\nlocal_cache: {max_keys: 1}\n```\n", "max_keys", true},
		{"| `batch.max_ops` / `batch.workers` |", "workers", true},
		{"```\nunterminated", "unterminated", false},
	} {
		if got := codeWords(tc.give)[tc.word]; got != tc.want {
			t.Errorf("codeWords(%q)[%q] = %v, want %v", tc.give, tc.word, got, tc.want)
		}
	}
}

// metricName finds the name of a collector in its Opts literal.
var metricName = regexp.MustCompile(`Name:\s*"(ext_authz_[a-z0-9_]+)"`)

// registeredMetrics are the metric names the module's non-test code
// declares.
func registeredMetrics(t *testing.T) map[string]string {
	t.Helper()
	found := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDir(d.Name()) || d.Name() == "tools" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range metricName.FindAllStringSubmatch(string(b), -1) {
			found[m[1]] = p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

var documentedMetric = regexp.MustCompile("`(ext_authz_[a-z0-9_]+)`")

// TestDocsListEveryMetric: every metric the code registers is in
// docs/operations.md, and every ext_authz_* series listed there exists.
func TestDocsListEveryMetric(t *testing.T) {
	code := registeredMetrics(t)
	if len(code) < 20 {
		t.Fatalf("found only %d metrics in the code: %v", len(code), code)
	}
	doc := read(t, "docs/operations.md")
	listed := map[string]bool{}
	for _, m := range documentedMetric.FindAllStringSubmatch(doc, -1) {
		listed[m[1]] = true
	}
	for name, file := range code {
		if !listed[name] {
			t.Errorf("docs/operations.md does not list %s (registered in %s)", name, file)
		}
	}
	for name := range listed {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if code[name] == "" && code[base] == "" {
			t.Errorf("docs/operations.md lists %s, which no code registers", name)
		}
	}
}

// skipDir: hidden directories (.git, and the run-time artefacts under
// loadtest/.out, .bin, .pool) and build output, which hold no document of
// ours but may hold third-party sources.
func skipDir(name string) bool {
	return (name != "." && name != ".." && strings.HasPrefix(name, ".")) ||
		name == "node_modules" || name == "bin" || name == "dist" || name == "results"
}

// markdownFiles are the repository's *.md files, relative to root.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	mdLink  = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile(`(?m)^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$`)
)

// anchors are the GitHub anchors of a Markdown text's headings: lower
// case, punctuation other than - and _ dropped, spaces as -, and -1, -2
// for repeats.
func anchors(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, m := range heading.FindAllStringSubmatch(fence.ReplaceAllString(md, ""), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

func TestAnchors(t *testing.T) {
	md := "# Rate limits\n## `rate_limit`\n### 5. Minting for development and load tests\n## Rate limits\n```\n# not a heading\n```\n"
	got := anchors(md)
	for _, want := range []string{"rate-limits", "rate_limit", "5-minting-for-development-and-load-tests", "rate-limits-1"} {
		if !got[want] {
			t.Errorf("anchors lack %q: %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Errorf("a comment in a code block became an anchor: %v", got)
	}
}

// TestRelativeLinksResolve: every relative link in a *.md file names an
// existing file, and a #fragment on a Markdown file names one of its
// headings. Links inside code are not links.
func TestRelativeLinksResolve(t *testing.T) {
	files := markdownFiles(t)
	if !slices.Contains(files, "README.md") || len(files) < 8 {
		t.Fatalf("found only %v", files)
	}
	var links int
	for _, name := range files {
		md := read(t, name)
		prose := inlineCode.ReplaceAllString(fence.ReplaceAllString(md, ""), "")
		for _, m := range mdLink.FindAllStringSubmatch(prose, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links++
			path, frag, _ := strings.Cut(target, "#")
			dest := name
			if path != "" {
				dest = filepath.Join(filepath.Dir(name), path)
				if _, err := os.Stat(filepath.Join(root, dest)); err != nil {
					t.Errorf("%s: link %s: %s does not exist", name, target, dest)
					continue
				}
			}
			if frag != "" && strings.HasSuffix(dest, ".md") && !anchors(read(t, dest))[frag] {
				t.Errorf("%s: link %s: %s has no heading #%s", name, target, dest, frag)
			}
		}
	}
	if links < 20 {
		t.Fatalf("found only %d relative links", links)
	}
}
