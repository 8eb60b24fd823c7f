package deploy

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// manifestDirs are the trees whose YAML the test owns.
var manifestDirs = []string{"deploy", "envoyfilters"}

// corpus is every manifest, decoded: files one by one, and the output of
// every kustomization directory.
type corpus struct {
	// Files maps a repository-relative path to its decoded documents.
	Files map[string][]*object
	// Rendered maps a kustomization directory to its decoded output.
	Rendered map[string][]*object
	// DataFiles are the files kustomize generators read (config files,
	// rate-limit files, keys): they are not Kubernetes objects and are
	// checked through the ConfigMaps and Secrets they become.
	DataFiles map[string]bool
	Errs      []error
}

var (
	corpusOnce sync.Once
	theCorpus  *corpus
)

// loadCorpus decodes everything once for all tests.
func loadCorpus(t *testing.T) *corpus {
	t.Helper()
	corpusOnce.Do(func() { theCorpus = buildCorpus() })
	return theCorpus
}

func rel(path string) string {
	r, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}
	return filepath.ToSlash(r)
}

func isYAML(name string) bool {
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// generatorFiles lists the files a kustomization's configMapGenerator and
// secretGenerator read, relative to the repository root.
func generatorFiles(dir string, data []byte) ([]string, error) {
	var k struct {
		ConfigMapGenerator []struct {
			Files []string `json:"files"`
			Envs  []string `json:"envs"`
		} `json:"configMapGenerator"`
		SecretGenerator []struct {
			Files []string `json:"files"`
			Envs  []string `json:"envs"`
		} `json:"secretGenerator"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil, err
	}
	var out []string
	add := func(files []string) {
		for _, f := range files {
			if _, path, ok := strings.Cut(f, "="); ok {
				f = path
			}
			out = append(out, rel(filepath.Join(dir, f)))
		}
	}
	for _, g := range k.ConfigMapGenerator {
		add(g.Files)
		add(g.Envs)
	}
	for _, g := range k.SecretGenerator {
		add(g.Files)
		add(g.Envs)
	}
	return out, nil
}

func buildCorpus() *corpus {
	c := &corpus{Files: map[string][]*object{}, Rendered: map[string][]*object{}, DataFiles: map[string]bool{}}
	var yamlFiles, kustomizations []string
	for _, d := range manifestDirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				if e.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			switch {
			case e.Name() == "kustomization.yaml":
				kustomizations = append(kustomizations, filepath.Dir(path))
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				files, err := generatorFiles(filepath.Dir(path), data)
				if err != nil {
					return err
				}
				for _, f := range files {
					c.DataFiles[f] = true
				}
			case isYAML(e.Name()):
				yamlFiles = append(yamlFiles, path)
			}
			return nil
		})
		if err != nil {
			c.Errs = append(c.Errs, err)
		}
	}
	for _, f := range yamlFiles {
		if c.DataFiles[rel(f)] {
			continue
		}
		objs, err := decodeFile(f)
		if err != nil {
			c.Errs = append(c.Errs, err)
		}
		c.Files[rel(f)] = objs
	}
	slices.Sort(kustomizations)
	for _, dir := range kustomizations {
		out, err := kustomize(dir)
		if err != nil {
			c.Errs = append(c.Errs, err)
			continue
		}
		objs, err := decodeStream("kustomize "+rel(dir), out)
		if err != nil {
			c.Errs = append(c.Errs, err)
		}
		c.Rendered[rel(dir)] = objs
	}
	return c
}

// TestManifestsDecodeStrictly is the first proof: every document in
// deploy/ and envoyfilters/, and everything every kustomization renders,
// decodes without unknown fields into the real types.
func TestManifestsDecodeStrictly(t *testing.T) {
	c := loadCorpus(t)
	for _, err := range c.Errs {
		t.Error(err)
	}
	// The walk found what the install needs; an empty corpus would prove
	// nothing.
	for _, dir := range []string{
		"deploy/base", "deploy/redis", "deploy/overlays/dev", "deploy/overlays/prod",
		"deploy/mesh/gateway", "deploy/mesh/gateway-api", "deploy/mesh/ext-authz", "deploy/mesh/sample",
		"deploy/mesh/sample-gateway-api", "deploy/mesh/addons", "deploy/observability", "deploy/observability-operator",
		"envoyfilters", "envoyfilters/envoyfilter-ext-authz", "envoyfilters/gateway-api",
	} {
		if len(c.Rendered[dir]) == 0 {
			t.Errorf("kustomization %s rendered nothing", dir)
		}
	}
	for _, f := range []string{"deploy/mesh/istio-operator.yaml", "envoyfilters/envoyfilter-ext-authz/ext-authz.yaml", "envoyfilters/ratelimit/ratelimit.yaml"} {
		if len(c.Files[f]) == 0 {
			t.Errorf("%s: no documents", f)
		}
	}
	// Every data file a generator reads is one the cross-reference test
	// checks by content (the service config, a rate-limit file, a key), an
	// addon's own config, or JSON that must parse.
	for f := range c.DataFiles {
		switch {
		case strings.HasSuffix(f, "/config.yaml"), strings.Contains(f, "/ratelimit/"),
			strings.Contains(f, "/dev-only-keys/"), strings.Contains(f, "/addons/"),
			f == alertsFile: // TestAlertsAreOneSetForBothInstalls
		case strings.HasSuffix(f, ".json"):
			data, err := os.ReadFile(filepath.Join(root, f))
			if err == nil && !json.Valid(data) {
				err = errors.New("not valid JSON")
			}
			if err != nil {
				t.Errorf("%s: %v", f, err)
			}
		default:
			t.Errorf("%s: generator input the test does not check; add a check for it", f)
		}
	}
}

// TestMisspeltFieldsAreRejected proves the decoders are strict: each file in
// testdata/misspelt is a copy of a real manifest with one field misspelt or
// one rule broken, and names in its first line what the error must say.
func TestMisspeltFieldsAreRejected(t *testing.T) {
	files, err := filepath.Glob("testdata/misspelt/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("found %d misspelt fixtures, want at least 8", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("first line %q must be \"# want: <error substring>\"", first)
			}
			_, err = decodeStream(f, data)
			if err == nil {
				t.Fatalf("decoded without error; want an error containing %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not contain %q", err, want)
			}
		})
	}
	t.Run("kustomization", func(t *testing.T) {
		_, err := kustomize("testdata/misspelt-kustomization")
		if err == nil || !strings.Contains(err.Error(), "configMapGenerater") {
			t.Fatalf("kubectl kustomize accepted a misspelt kustomization field: %v", err)
		}
	})
}
