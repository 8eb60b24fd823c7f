package tokens

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	rtmetrics "runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// oldAPIKeyLoad is NewAPIKeyVerifier as it was before the plain-format
// reader: yaml.v3 over the whole file, keys in a map. It is the oracle of
// the differential tests and the baseline of the benchmarks.
func oldAPIKeyLoad(cfg APIKeyConfig) (map[[sha256.Size]byte]*Principal, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var f APIKeyFile
	yf, err := yamlfile.Load(cfg.File, &f, func(string) string { return "" })
	if err != nil {
		return nil, yamlfile.Errorf("file", "%v", err)
	}
	issuer := cfg.Issuer
	if issuer == "" {
		issuer = "api-keys"
	}
	byHash := make(map[[sha256.Size]byte]*Principal, len(f.Keys))
	var errs []error
	for i, k := range f.Keys {
		p := yamlfile.Index("keys", i)
		var h [sha256.Size]byte
		raw, err := hex.DecodeString(strings.TrimSpace(k.SHA256))
		switch {
		case k.Subject == "":
			errs = append(errs, yamlfile.Errorf(p+".subject", "required"))
		case err != nil || len(raw) != sha256.Size:
			errs = append(errs, yamlfile.Errorf(p+".sha256", "must be 64 hex digits (the SHA-256 of the key)"))
		}
		if len(raw) != sha256.Size {
			continue
		}
		copy(h[:], raw)
		if _, dup := byHash[h]; dup {
			errs = append(errs, yamlfile.Errorf(p+".sha256", "the same key is listed twice"))
			continue
		}
		byHash[h] = &Principal{
			Subject: k.Subject, Issuer: issuer, Method: MethodAPIKey,
			AppID: k.AppID, Scopes: k.Scopes, Claims: k.Claims,
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, yamlfile.Errorf("file", "%v", yf.Annotate(err))
	}
	return byHash, nil
}

// principals lists what v accepts, by digest.
func (v *APIKeyVerifier) principals() map[[sha256.Size]byte]*Principal {
	out := make(map[[sha256.Size]byte]*Principal, len(v.entries))
	for i := range v.entries {
		e := &v.entries[i]
		a := v.attrs[e.attrs]
		out[e.digest] = &Principal{Subject: e.subject, Issuer: v.issuer, Method: MethodAPIKey,
			AppID: a.appID, Scopes: a.scopes, Claims: a.claims}
	}
	return out
}

// isPlain reports whether the plain-format reader takes content.
func isPlain(t testing.TB, content string) bool {
	t.Helper()
	err := readPlainKeys(strings.NewReader(content), func(*rawKey) {})
	if err != nil && !errors.Is(err, errNotPlain) {
		t.Fatal(err)
	}
	return err == nil
}

// compareLoaders fails unless the new and old loaders agree on the file:
// the same error text, or the same principals for every digest.
func compareLoaders(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := APIKeyConfig{File: name, Issuer: "iss"}
	v, err := NewAPIKeyVerifier(cfg)
	want, wantErr := oldAPIKeyLoad(cfg)
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("file:\n%s\nerror %v\nold   %v", content, err, wantErr)
	}
	if err != nil {
		return
	}
	if got := v.principals(); !reflect.DeepEqual(got, want) {
		t.Fatalf("file:\n%s\nprincipals %v\nold        %v", content, dump(got), dump(want))
	}
}

func dump(m map[[sha256.Size]byte]*Principal) string {
	var b strings.Builder
	for k, p := range m {
		fmt.Fprintf(&b, "%x…=%#v ", k[:4], *p)
	}
	return b.String()
}

func keyHex(i int) string { return HashAPIKey(fmt.Sprint("key-", i)) }

// Values that are plain, quoted, or only YAML: the generator mixes them
// so files land on both sides of the plain reader.
var (
	genSubjects = []string{"ci-bot", "user@example.com", `"quoted"`, "a/b", "_x", "123", "0x1F", "1e3", `""`, `'single'`,
		`"with # hash"`, "null", "~", "Null", `"null"`, "a b", "${X}", `"$${X}"`, "é", "-x", "a:b", `"tab\there"`, `'it''s'`, "true", "yes", ".5", "NULL", "TRUE", "False", "2001-12-14", "1_000", "0o17", "0b101", "1.0", "0777", "inf", "nan", "Yes", "off"}
	genAppIDs = []string{"ci", "app-1", `""`, `"x y"`, "42", "~"}
	genScopes = []string{"[]", "[deploy]", "[a, b]", "[ a ,b ]", `["r", 'w']`, "[1, 2]", "[a, null]", "[a, NULL]", "[a, ~]", "[true]", "[2001-12-14, 1_000, 0o17]", "\n@- read\n@- 'write'", "\n@-  a # c\n\n@- b", "\n@- a\n@  - b", "\n@- null", "\n@-", "\n@- [a]", "\n@a: b", "[a,]", "{}", "\n      - a", "[a b]", "[yes]"}
	genClaims = []string{"{}", "{team: platform}", "{team: platform, tier: 'gold'}", "{n: 1}", "{a: true}", `{a: "x"}`, "{a: b, a: c}",
		"\n@team: payments\n@tier: 'gold' # c", "\n@team: x\n@team: y", "\n@team: 1", "\n@team:", "\n@team:\n@@x: y", "\n@- a", "{a: b c}", "{1: a}", "{a: yes}", "{a: [x]}", "{a:b}", "\n      team: x", "{a: null}", "{a: \"\"}", "{a: TRUE}", "{a: True}", `{a: "true"}`, "{true: a}", "{a: NULL}", "{a: ~}", "{a: 'it''s'}", "{a: 1.5}"}
	genComments = []string{"", " # c", "  #c", "#no-space"}
)

func genSHA(rnd *rand.Rand, i int) string {
	h := keyHex(i)
	switch rnd.IntN(80) {
	case 0:
		return strings.ToUpper(h)
	case 1:
		return h + "a" // 65 digits: hex decodes 32 bytes, then fails
	case 2:
		return h + "zz"
	case 3:
		return h[:10]
	case 4:
		return `" ` + h + ` "`
	case 5:
		return keyHex(rnd.IntN(3)) // duplicates
	case 6:
		return "g" + h[1:]
	case 7:
		return h + h
	}
	return h
}

// genKeysFile writes a keys file, mostly in the plain format.
func genKeysFile(rnd *rand.Rand, n int) string {
	var b strings.Builder
	if rnd.IntN(8) == 0 {
		b.WriteString("# keys\n\n")
	}
	b.WriteString("keys:" + genComments[rnd.IntN(2)] + "\n")
	indent := []string{"", "  ", "    "}[rnd.IntN(3)]
	dash := []string{"- ", "-  "}[rnd.IntN(2)]
	cont := indent + strings.Repeat(" ", len(dash))
	// Most files keep to values the plain reader takes (the first ones
	// of each list); the rest draw from everything.
	clean := rnd.IntN(10) < 7
	pick := func(s []string) string {
		if clean || rnd.IntN(5) > 0 {
			return s[rnd.IntN(min(len(s), 3))]
		}
		return s[rnd.IntN(len(s))]
	}
	for i := range n {
		type field struct{ name, value string }
		var fields []field
		if rnd.IntN(40) > 0 {
			s := pick(genSubjects)
			if rnd.IntN(2) == 0 {
				s = fmt.Sprint("user-", i)
			}
			fields = append(fields, field{"subject", s})
		}
		if rnd.IntN(12) > 0 {
			fields = append(fields, field{"sha256", genSHA(rnd, i)})
		}
		if rnd.IntN(3) == 0 {
			fields = append(fields, field{"app_id", pick(genAppIDs)})
		}
		if rnd.IntN(3) == 0 {
			fields = append(fields, field{"scopes", pick(genScopes)})
		}
		if rnd.IntN(4) == 0 {
			fields = append(fields, field{"claims", pick(genClaims)})
		}
		if !clean && rnd.IntN(10) == 0 {
			fields = append(fields, field{"colour", "red"})
		}
		if !clean && rnd.IntN(10) == 0 && len(fields) > 0 {
			fields = append(fields, fields[0]) // a field twice
		}
		rnd.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
		if len(fields) == 0 {
			fields = append(fields, field{"subject", "only"})
		}
		for j, f := range fields {
			lead := cont
			if j == 0 {
				lead = indent + dash
			}
			value := strings.ReplaceAll(f.value, "@", cont+"  ")
			if strings.HasPrefix(value, "\n") && rnd.IntN(3) == 0 {
				value = strings.TrimSuffix(pick(genComments), "#no-space") + value // "scopes: # c" then the block
			}
			line := lead + f.name + ": " + value
			if !strings.Contains(f.value, "\n") {
				line += pick(genComments)
			}
			if clean {
				b.WriteString(line + "\n")
				continue
			}
			switch rnd.IntN(40) {
			case 0:
				line = strings.Replace(line, " ", "\t", 1)
			case 1:
				line += "\r"
			case 2:
				line = " " + line
			case 3:
				line += "  "
			}
			b.WriteString(line + "\n")
		}
		switch rnd.IntN(20) {
		case 0, 1:
			b.WriteString("\n")
		case 2:
			b.WriteString(indent + "# → é, ☃\n")
		case 3:
			if !clean {
				b.WriteString([]string{"# \x01\n", "# \xff\n", "# \u0085 x\n", "# \u2028 x\n", "# \uFEFF\n", "# \uFFFE\n", "#\u00a0 \U0001F600\n"}[rnd.IntN(7)])
			}
		}
	}
	if !clean && rnd.IntN(10) == 0 {
		b.WriteString("other: 1\n")
	}
	return b.String()
}

// TestAPIKeyFastMatchesYAML is the differential test of the whole loader
// (plain reader or yaml.v3 fallback) against the old yaml.v3 loader.
func TestAPIKeyFastMatchesYAML(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	name := filepath.Join(t.TempDir(), "keys.yaml")
	var plain, plainOK int
	for range 1500 {
		content := genKeysFile(rnd, 1+rnd.IntN(6))
		compareLoaders(t, name, content)
		if isPlain(t, content) {
			plain++
			if _, err := oldAPIKeyLoad(APIKeyConfig{File: name}); err == nil {
				plainOK++
			}
		}
	}
	// The generator must reach both paths, and valid plain files.
	if plain < 600 || plain > 1400 || plainOK < 300 {
		t.Fatalf("generator: %d plain files (%d valid) of 1500", plain, plainOK)
	}
	t.Logf("%d of 1500 files plain, %d of them valid", plain, plainOK)
}

// TestAPIKeyValues loads, for every value the generator knows, a file of
// one valid key with that value in its field, and compares the loaders.
func TestAPIKeyValues(t *testing.T) {
	name := filepath.Join(t.TempDir(), "keys.yaml")
	for _, tt := range []struct {
		field  string
		values []string
	}{
		{"subject", genSubjects}, {"app_id", genAppIDs}, {"scopes", genScopes}, {"claims", genClaims},
	} {
		for _, v := range tt.values {
			for _, comment := range genComments {
				var content string
				if tt.field == "subject" {
					content = "keys:\n  - sha256: " + keyHex(1) + "\n    subject: " + v
				} else {
					content = "keys:\n  - subject: s\n    sha256: " + keyHex(1) + "\n    " + tt.field + ": " + v
				}
				if !strings.Contains(v, "\n") {
					content += comment
				}
				compareLoaders(t, name, content+"\n")
			}
		}
	}
}

// FuzzAPIKeyFile compares the loaders on arbitrary files.
func FuzzAPIKeyFile(f *testing.F) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		f.Add(genKeysFile(rnd, 1+rnd.IntN(4)))
	}
	f.Add("keys:\n  - subject: a\n    sha256: " + keyHex(1) + "\n")
	name := filepath.Join(f.TempDir(), "keys.yaml")
	f.Fuzz(func(t *testing.T, content string) {
		compareLoaders(t, name, content)
	})
}

// TestAPIKeyErrors pins messages of the plain reader (checked against the
// old loader too): file, line and field of each problem, in file order.
func TestAPIKeyErrors(t *testing.T) {
	dir := t.TempDir()
	h := keyHex(1)
	tests := []struct {
		name string
		give string
		want []string // lines of the error, after "file: "
	}{
		{"missing subject", "keys:\n  - sha256: " + h + "\n",
			[]string{"F:2: keys[0].subject: required"}},
		{"empty subject", "keys:\n  - sha256: " + h + "\n    subject: ''\n",
			[]string{"F:3: keys[0].subject: required"}},
		{"bad hash", "keys:\n  - subject: a\n    sha256: abc\n",
			[]string{"F:3: keys[0].sha256: must be 64 hex digits (the SHA-256 of the key)"}},
		{"missing hash", "keys:\n\n  - subject: a\n    app_id: x\n",
			[]string{"F:3: keys[0].sha256: must be 64 hex digits (the SHA-256 of the key)"}},
		{"duplicates in file order", "keys:\n  - subject: a\n    sha256: " + h + "\n  - subject: b\n    sha256: " + keyHex(2) +
			"\n  - subject: c\n    sha256: " + h + "\n  - subject: ''\n    sha256: " + h + "\n",
			[]string{"F:7: keys[2].sha256: the same key is listed twice", "F:8: keys[3].subject: required", "F:9: keys[3].sha256: the same key is listed twice"}},
		{"65 digits hold the place of the 64", "keys:\n  - subject: a\n    sha256: " + h + "f\n  - subject: b\n    sha256: " + h + "\n",
			[]string{"F:3: keys[0].sha256: must be 64 hex digits (the SHA-256 of the key)", "F:5: keys[1].sha256: the same key is listed twice"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(dir, fmt.Sprint(i, ".yaml"))
			compareLoaders(t, name, tt.give)
			_, err := NewAPIKeyVerifier(APIKeyConfig{File: name})
			if err == nil {
				t.Fatal("loaded")
			}
			want := "file: " + strings.ReplaceAll(strings.Join(tt.want, "\n"), "F", name)
			if err.Error() != want {
				t.Fatalf("error\n%v\nwant\n%s", err, want)
			}
		})
	}
}

// TestAPIKeyFallbackErrors: a file outside the plain format gets
// yamlfile's message (whatever its wording), with the file, the line and
// the field.
func TestAPIKeyFallbackErrors(t *testing.T) {
	name := filepath.Join(t.TempDir(), "keys.yaml")
	content := "keys:\n  - subject: a\n    colour: red\n"
	compareLoaders(t, name, content)
	_, err := NewAPIKeyVerifier(APIKeyConfig{File: name})
	if err == nil || !strings.HasPrefix(err.Error(), "file: "+name) || !strings.Contains(err.Error(), "3") ||
		!strings.Contains(err.Error(), "colour") {
		t.Fatalf("error %v", err)
	}
}

// TestAPIKeyVerify: keys are found, shared attributes are the file's, and
// unknown or oversized credentials are refused.
func TestAPIKeyVerify(t *testing.T) {
	name := filepath.Join(t.TempDir(), "keys.yaml")
	var b strings.Builder
	b.WriteString("keys:\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "  - subject: user-%d\n    sha256: %s\n    app_id: app-%d\n    scopes: [read]\n", i, keyHex(i), i%3)
		if i%2 == 0 {
			b.WriteString("    claims: {team: t}\n")
		}
	}
	if !isPlain(t, b.String()) {
		t.Fatal("not plain")
	}
	compareLoaders(t, name, b.String())
	v, err := NewAPIKeyVerifier(APIKeyConfig{File: name, MaxBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.attrs) != 6 {
		t.Errorf("%d attribute sets, want 6 (3 app ids × with and without claims)", len(v.attrs))
	}
	for _, i := range []int{0, 1, 2499, 4999} {
		p, err := v.Verify(context.Background(), fmt.Sprint("key-", i))
		want := Principal{Subject: fmt.Sprint("user-", i), Issuer: "api-keys", Method: MethodAPIKey,
			AppID: fmt.Sprint("app-", i%3), Scopes: []string{"read"}}
		if i%2 == 0 {
			want.Claims = map[string]any{"team": "t"}
		}
		if err != nil || !reflect.DeepEqual(p, want) {
			t.Errorf("key %d: %+v, %v", i, p, err)
		}
	}
	for _, tt := range []struct {
		give string
		want error
	}{
		{"key-5000", ErrUnknownCredential},
		{"", ErrUnknownCredential},
		{strings.Repeat("k", 101), ErrTooLarge},
	} {
		if _, err := v.Verify(context.Background(), tt.give); !errors.Is(err, tt.want) {
			t.Errorf("%.10q: %v, want %v", tt.give, err, tt.want)
		}
	}
	if s := v.String(); !strings.Contains(s, "5000 keys") || strings.Contains(s, keyHex(0)) {
		t.Errorf("String() = %q", s)
	}
}

// TestAPIKeyEmptyAndMissing: a file with no keys verifies nothing; a
// missing file is an error naming it.
func TestAPIKeyEmptyAndMissing(t *testing.T) {
	dir := t.TempDir()
	for _, give := range []string{"", "keys:\n", "keys: []\n", "# nothing\n"} {
		name := filepath.Join(dir, "k.yaml")
		compareLoaders(t, name, give)
		v, err := NewAPIKeyVerifier(APIKeyConfig{File: name})
		if err != nil {
			t.Fatalf("%q: %v", give, err)
		}
		if _, err := v.Verify(context.Background(), "x"); !errors.Is(err, ErrUnknownCredential) {
			t.Fatalf("%q: %v", give, err)
		}
	}
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := NewAPIKeyVerifier(APIKeyConfig{File: missing}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("%v", err)
	}
}

// writeKeysFile writes n keys in the plain format, as a generator would,
// with a few shared app ids and scopes.
func writeKeysFile(tb testing.TB, dir string, n int) string {
	tb.Helper()
	name := filepath.Join(dir, fmt.Sprint("keys-", n, ".yaml"))
	f, err := os.Create(name)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "keys:\n")
	for i := range n {
		fmt.Fprintf(w, "  - subject: user-%07d\n    sha256: %s\n    app_id: app-%d\n    scopes: [read, write]\n", i, keyHex(i), i%10)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		tb.Fatal(err)
	}
	return name
}

// peakHeap samples the heap's live objects every millisecond while
// running f, and returns the largest sample and the heap after f (after
// a GC, with f's result kept alive by the caller).
func peakHeap(f func()) (peak uint64) {
	runtime.GC()
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	base := s[0].Value.Uint64()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			rtmetrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(done)
	<-stopped
	return peak - min(peak, base)
}

func liveHeap() uint64 {
	runtime.GC()
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkAPIKeyLoad loads files of 10k, 100k and 1M keys with the new
// loader and the old one (the old one only up to 100k: at 1M it needs
// about 6 GiB). Besides time, B/op and allocs/op it reports the peak heap
// while loading and the heap the verifier keeps, per key.
func BenchmarkAPIKeyLoad(b *testing.B) {
	dir := b.TempDir()
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		name := writeKeysFile(b, dir, n)
		impls := []struct {
			impl string
			load func() (any, error)
		}{
			{"new", func() (any, error) { return NewAPIKeyVerifier(APIKeyConfig{File: name}) }},
			{"old", func() (any, error) { return oldAPIKeyLoad(APIKeyConfig{File: name}) }},
		}
		for _, im := range impls {
			if im.impl == "old" && n > 100_000 {
				continue
			}
			b.Run(fmt.Sprintf("keys=%d/impl=%s", n, im.impl), func(b *testing.B) {
				b.ReportAllocs()
				var peak, live uint64
				for b.Loop() {
					base := liveHeap()
					var v any
					var err error
					peak = max(peak, peakHeap(func() { v, err = im.load() }))
					if err != nil {
						b.Fatal(err)
					}
					live = liveHeap() - min(base, liveHeap())
					runtime.KeepAlive(v)
				}
				b.ReportMetric(float64(peak)/float64(n), "peak-B/key")
				b.ReportMetric(float64(live)/float64(n), "live-B/key")
				b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
			})
		}
	}
}

// BenchmarkAPIKeyVerify looks up a valid key among 100k (new and old) and
// 1M (new).
func BenchmarkAPIKeyVerify(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	for _, n := range []int{100_000, 1_000_000} {
		name := writeKeysFile(b, dir, n)
		v, err := NewAPIKeyVerifier(APIKeyConfig{File: name})
		if err != nil {
			b.Fatal(err)
		}
		creds := make([]string, 1024)
		for i := range creds {
			creds[i] = fmt.Sprint("key-", (i*7919)%n)
		}
		b.Run(fmt.Sprintf("keys=%d/impl=new", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := v.Verify(ctx, creds[i%len(creds)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		if n > 100_000 {
			continue
		}
		old, err := oldAPIKeyLoad(APIKeyConfig{File: name})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("keys=%d/impl=old", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p, ok := old[sha256.Sum256([]byte(creds[i%len(creds)]))]
				if !ok {
					b.Fatal("unknown")
				}
				_ = *p
				i++
			}
		})
	}
}

// TestAPIKeyLongLine: a line longer than the plain reader's buffer is
// left to yaml.v3, which takes it.
func TestAPIKeyLongLine(t *testing.T) {
	name := filepath.Join(t.TempDir(), "keys.yaml")
	content := "keys:\n  - subject: " + strings.Repeat("s", maxPlainLine+10) + "\n    sha256: " + keyHex(1) + "\n"
	if isPlain(t, content) {
		t.Fatal("plain reader took a line longer than its buffer")
	}
	compareLoaders(t, name, content)
	v, err := NewAPIKeyVerifier(APIKeyConfig{File: name})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(context.Background(), "key-1"); err != nil || len(p.Subject) != maxPlainLine+10 {
		t.Fatalf("%d, %v", len(p.Subject), err)
	}
}

// TestAPIKeyExampleFiles: the shipped key files are in the plain format
// and load as yaml.v3 reads them.
func TestAPIKeyExampleFiles(t *testing.T) {
	dir := t.TempDir()
	for i, name := range []string{"../examples/quickstart/api-keys.yaml", "../deploy/overlays/dev/dev-only-keys/api-keys.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !isPlain(t, string(b)) {
			t.Errorf("%s: not in the plain format", name)
		}
		compareLoaders(t, filepath.Join(dir, fmt.Sprint(i, ".yaml")), string(b))
	}
}
