package release

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const root = "../.."

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// makeVar returns the right-hand side of "NAME ?= ..." or "NAME := ...".
func makeVar(t *testing.T, makefile, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `\s*[?:]?=\s*(.*)$`).FindStringSubmatch(makefile)
	if m == nil {
		t.Fatalf("Makefile does not set %s", name)
	}
	return strings.TrimSpace(m[1])
}

// recipe returns the commands of a Makefile target, continuation lines
// joined.
func recipe(t *testing.T, makefile, target string) string {
	t.Helper()
	_, after, ok := strings.Cut(makefile, "\n"+target+":")
	if !ok {
		t.Fatalf("Makefile has no %s target", target)
	}
	var lines []string
	for _, l := range strings.Split(after, "\n")[1:] {
		if !strings.HasPrefix(l, "\t") {
			break
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	return strings.ReplaceAll(strings.Join(lines, "\n"), "\\\n", " ")
}

// dockerGoBuild returns the Dockerfile's go build command line.
func dockerGoBuild(t *testing.T, dockerfile string) string {
	t.Helper()
	joined := strings.ReplaceAll(dockerfile, "\\\n", " ")
	for _, l := range strings.Split(joined, "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") {
			return l
		}
	}
	t.Fatal("Dockerfile has no RUN ... go build")
	return ""
}

var ldflagsRE = regexp.MustCompile(`-ldflags="([^"]*)"`)

// TestDockerfileBuildsWhatMakeBuilds: same environment, same flags, same
// ldflags (with the version from the build argument), same package.
func TestDockerfileBuildsWhatMakeBuilds(t *testing.T) {
	mk, df := read(t, "Makefile"), read(t, "Dockerfile")
	if v := makeVar(t, mk, "VERSION"); !strings.Contains(v, "git describe --tags --always --dirty") {
		t.Errorf("Makefile VERSION = %q, want it from git describe --tags --always --dirty", v)
	}
	ldflags := makeVar(t, mk, "LDFLAGS")
	if !strings.Contains(ldflags, "-X main.version=$(VERSION)") {
		t.Errorf("Makefile LDFLAGS = %q, want -X main.version=$(VERSION)", ldflags)
	}
	build := recipe(t, mk, "build")
	for _, want := range []string{"CGO_ENABLED=0", "$(GO) build", "-trimpath", `-ldflags="$(LDFLAGS)"`, "./cmd/ext-authz"} {
		if !strings.Contains(build, want) {
			t.Errorf("make build recipe %q lacks %q", build, want)
		}
	}
	run := dockerGoBuild(t, df)
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", "./cmd/ext-authz"} {
		if !strings.Contains(run, want) {
			t.Errorf("Dockerfile go build %q lacks %q", run, want)
		}
	}
	m := ldflagsRE.FindStringSubmatch(run)
	if m == nil {
		t.Fatalf("Dockerfile go build has no -ldflags=\"...\": %q", run)
	}
	if got := strings.ReplaceAll(m[1], "${VERSION}", "$(VERSION)"); got != ldflags {
		t.Errorf("Dockerfile ldflags %q, Makefile LDFLAGS %q: they must be the same", m[1], ldflags)
	}
	if !regexp.MustCompile(`(?m)^ARG VERSION\b`).MatchString(df) {
		t.Error("Dockerfile has no ARG VERSION")
	}
	// Flags other than the environment, ldflags and output must agree too.
	if got, want := otherFlags(run), otherFlags(build); got != want {
		t.Errorf("go build flags differ: Dockerfile %q, Makefile %q", got, want)
	}
	image := recipe(t, mk, "image")
	for _, want := range []string{"--build-arg VERSION=$(VERSION)", "-t $(IMAGE):$(VERSION)"} {
		if !strings.Contains(image, want) {
			t.Errorf("make image recipe %q lacks %q", image, want)
		}
	}
}

// otherFlags is a go build line without the environment, -ldflags and -o.
func otherFlags(line string) string {
	_, cmd, _ := strings.Cut(line, " build ")
	cmd = ldflagsRE.ReplaceAllString(cmd, "")
	var out []string
	fields := strings.Fields(cmd)
	for i := 0; i < len(fields); i++ {
		if fields[i] == "-o" {
			i++
			continue
		}
		out = append(out, fields[i])
	}
	return strings.Join(out, " ")
}

// TestVersionVariableExists: -X silently does nothing when the variable it
// names is gone, so the string variable main.version must exist.
func TestVersionVariableExists(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(root, "cmd/ext-authz/*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cmd/ext-authz sources: %v", err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if f.Name.Name != "main" {
			continue
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for _, n := range vs.Names {
					if n.Name == "version" {
						return
					}
				}
			}
		}
	}
	t.Fatal("package main in cmd/ext-authz has no var version for -X main.version")
}

// TestBuiltBinaryReportsVersion builds the binary with the Makefile's
// ldflags and runs `version`. It leaves out -trimpath and CGO_ENABLED=0
// (compared above) so the build reuses the packages the tests compiled and
// only links anew.
func TestBuiltBinaryReportsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ldflags := strings.ReplaceAll(makeVar(t, read(t, "Makefile"), "LDFLAGS"), "$(VERSION)", "v9.8.7-test")
	bin := filepath.Join(t.TempDir(), "ext-authz")
	build := exec.Command("go", "build", "-ldflags="+ldflags, "-o", bin, "./cmd/ext-authz")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("v9.8.7-test")) {
		t.Fatalf("ext-authz version = %q, %v; want it to print v9.8.7-test", out, err)
	}
}

var changelogVersionRE = regexp.MustCompile(`(?m)^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$`)

// TestImageTagsAreReleasedVersions: the prod overlay and the base pin the
// image the Makefile builds, at a version the CHANGELOG lists.
func TestImageTagsAreReleasedVersions(t *testing.T) {
	cl := read(t, "CHANGELOG.md")
	released := map[string]bool{}
	for _, m := range changelogVersionRE.FindAllStringSubmatch(cl, -1) {
		released["v"+m[1]] = true
		if !strings.Contains(cl, "\n["+m[1]+"]: ") {
			t.Errorf("CHANGELOG.md: version %s has no link reference", m[1])
		}
	}
	if len(released) == 0 || !strings.Contains(cl, "## [Unreleased]") {
		t.Fatalf("CHANGELOG.md lists no released versions (## [X.Y.Z] - YYYY-MM-DD) or no [Unreleased] section")
	}
	image := makeVar(t, read(t, "Makefile"), "IMAGE")

	var kust struct {
		Images []struct {
			Name    string `yaml:"name"`
			NewTag  string `yaml:"newTag"`
			NewName string `yaml:"newName"`
			Digest  string `yaml:"digest"`
		} `yaml:"images"`
	}
	if err := yaml.Unmarshal([]byte(read(t, "deploy/overlays/prod/kustomization.yaml")), &kust); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, im := range kust.Images {
		if im.Name != image {
			continue
		}
		found = true
		if im.NewName != "" && im.NewName != image {
			t.Errorf("prod overlay renames the image to %s", im.NewName)
		}
		if !released[im.NewTag] {
			t.Errorf("prod overlay pins %s:%s, not a version in CHANGELOG.md (%v)", image, im.NewTag, released)
		}
	}
	if !found {
		t.Errorf("prod overlay sets no tag for %s", image)
	}

	m := regexp.MustCompile(`(?m)^\s*image:\s*(\S+):(\S+)\s*$`).FindStringSubmatch(read(t, "deploy/base/deployment.yaml"))
	if m == nil {
		t.Fatal("deploy/base/deployment.yaml: no image line")
	}
	if m[1] != image || !released[m[2]] {
		t.Errorf("base deploys %s:%s; want %s at a version in CHANGELOG.md", m[1], m[2], image)
	}
}

func TestLicense(t *testing.T) {
	l := read(t, "LICENSE")
	for _, want := range []string{"Apache License", "Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION", "END OF TERMS AND CONDITIONS"} {
		if !strings.Contains(l, want) {
			t.Errorf("LICENSE lacks %q", want)
		}
	}
}
