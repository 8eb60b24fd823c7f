package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ext-authz/ext-authz/internal/benchcpu"
)

// decodeTwice is Decode as it was before it parsed once: the node tree for
// the check, then the data again through yaml.v3's strict decoder. It is
// the oracle of the differential tests and the baseline of BenchmarkDecode.
func decodeTwice(name string, data []byte, dst any) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return syntaxError(name, err)
	}
	if _, err := check(name, &root, reflect.TypeOf(dst)); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", name, cleanYAMLError(err))
	}
	return nil
}

// checkSameAsTwice requires Decode to accept and refuse what decodeTwice
// (with the same ${} expansion after it) does, with the same error for
// the same cause, and to decode the same value.
func checkSameAsTwice(t *testing.T, data []byte) (ok bool) {
	t.Helper()
	var once, twice config
	_, errOnce := Decode("f.yaml", data, &once, func(string) string { return "v" })
	errTwice := decodeTwice("f.yaml", data, &twice)
	if errTwice == nil {
		errTwice = expand(reflect.ValueOf(&twice), "", func(string) string { return "v" })
		if errTwice != nil {
			return errOnce != nil // Decode annotates expansion errors with lines
		}
	}
	switch {
	case (errOnce == nil) != (errTwice == nil):
		t.Fatalf("Decode(%q) = %v; parsed twice: %v", data, errOnce, errTwice)
	case errOnce != nil && errOnce.Error() != errTwice.Error():
		t.Fatalf("Decode(%q) error %q; parsed twice: %q", data, errOnce, errTwice)
	case errOnce == nil && !reflect.DeepEqual(once, twice):
		t.Fatalf("Decode(%q) = %+v; parsed twice: %+v", data, once, twice)
	}
	return errOnce == nil
}

var onceCorpus = []string{
	"",
	"# only a comment\n",
	"---\n",
	"~\n",
	"server: {grpc_address: x, drain_delay: 2s, keepalive: {time: 1m}, max_streams: 7, debug: true}\n",
	"rules:\n  - name: a\n    action: allow\n    authenticators: [k, j]\n    weight: 1.5\n  - {name: b}\n",
	"limits: {a: 1, b: 2}\nrealm: r\nextra: {realm: e}\n",
	"common: &d {debug: true}\nserver:\n  <<: *d\n  grpc_address: x\n",
	"server: &s {grpc_address: x}\nextra: *s\n",
	"rules: [{name: a}, {name: a, name: b}]\n",
	"limits: {a: -1}\n",
	"limits: {a: x}\n",
	"server: {max_streams: 1.5}\n",
	"server: {keepalive: 3}\n",
	"rules: {name: a}\n",
	"realm: [a]\n",
	"server:\n  <<: [{debug: true}, {drain_delay: 1s}]\n",
	"server:\n  <<: 3\n",
	"a: &x [*x]\n",
	"rules:\n  - name: ${X}\n",
	"realm: !!binary aGk=\n",
	"realm: !custom x\n",
	"server: {grpc_address: x}\n---\nrealm: second document\n",
	"realm: 'a'\nrealm: b\n",
	"extra: null\nlimits: ~\n",
	"server: {max_streams: 4294967296}\n",
	"server: {debug: yes}\n",
	"rules:\n- name: a\n  weight: .inf\n",
}

// TestDecodeSameAsTwice: parsing once decodes every corpus file as the
// two-pass decoder did: the same value, the same errors.
func TestDecodeSameAsTwice(t *testing.T) {
	ok := 0
	for _, s := range append(onceCorpus, sampleYAML) {
		if checkSameAsTwice(t, []byte(s)) {
			ok++
		}
	}
	if ok < 10 || ok > len(onceCorpus)-5 {
		t.Fatalf("%d of %d corpus files decoded: the corpus should hold both outcomes", ok, len(onceCorpus))
	}
}

// FuzzDecodeSameAsTwice is TestDecodeSameAsTwice for any input.
func FuzzDecodeSameAsTwice(f *testing.F) {
	for _, s := range onceCorpus {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return // bounded work per input
		}
		checkSameAsTwice(t, data)
	})
}

type nest struct {
	N *nest `yaml:"n"`
	V int   `yaml:"v"`
}

// TestDecodeDeepStaysStrict: past the depth the check walks, the decoder
// still refuses an unknown field (it falls back to yaml.v3's strict
// decoder), and a deep valid file decodes.
func TestDecodeDeepStaysStrict(t *testing.T) {
	deep := func(leaf string) []byte {
		return []byte(strings.Repeat("{n: ", 150) + leaf + strings.Repeat("}", 150) + "\n")
	}
	var n nest
	_, err := Decode("d.yaml", deep("{bogus: 1}"), &n, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "d.yaml: ") || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("Decode with an unknown field 151 levels deep = %v, want it refused", err)
	}
	n = nest{}
	if _, err := Decode("d.yaml", deep("{v: 7}"), &n, func(string) string { return "" }); err != nil {
		t.Fatalf("Decode deep valid = %v", err)
	}
	depth, p := 0, &n
	for p.N != nil {
		p, depth = p.N, depth+1
	}
	if depth != 150 || p.V != 7 {
		t.Fatalf("decoded %d levels ending in %d, want 150 and 7", depth, p.V)
	}
}

// policyYAML is a config of n rules in the shape of the service's policy.
func policyYAML(n int) []byte {
	var b strings.Builder
	b.WriteString("server: {grpc_address: ':9000', drain_delay: 5s}\nrealm: bench\nrules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: r%d\n    action: authenticate\n    authenticators: [keys, jwt]\n    weight: %d.5\n", i, i%7)
	}
	return []byte(b.String())
}

// BenchmarkDecode decodes a 10,000-rule file: parsed once (Decode) against
// parsed twice (the previous Decode, decodeTwice), in the same run.
func BenchmarkDecode(b *testing.B) {
	data := policyYAML(10000)
	b.Run("impl=once", func(b *testing.B) {
		b.ReportAllocs()
		benchcpu.Report(b)
		for b.Loop() {
			var c config
			if _, err := Decode("p.yaml", data, &c, func(string) string { return "" }); err != nil || len(c.Rules) != 10000 {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=twice", func(b *testing.B) {
		b.ReportAllocs()
		benchcpu.Report(b)
		for b.Loop() {
			var c config
			if err := decodeTwice("p.yaml", data, &c); err != nil || len(c.Rules) != 10000 {
				b.Fatal(err)
			}
		}
	})
}

// TestDecodeDuplicateKeys: a key set twice is reported with the line of
// its first occurrence whether the mapping is short (keys compared in
// turn) or long (a map), and a key that a merge also sets is not a
// duplicate.
func TestDecodeDuplicateKeys(t *testing.T) {
	var long strings.Builder
	long.WriteString("server:\n  debug: true\n")
	for i := range smallMapping + 2 {
		fmt.Fprintf(&long, "  x%d: 1\n", i)
	}
	long.WriteString("  debug: false\n")
	tests := []struct{ name, give, want string }{
		{"short", "server:\n  debug: true\n  grpc_address: x\n  debug: false\n", `c.yaml:4: server: field "debug" is set twice (first on line 2)`},
		{"long", long.String(), `c.yaml:` + fmt.Sprint(smallMapping+5) + `: server: field "debug" is set twice (first on line 2)`},
		{"merge sets it too", "server:\n  <<: {debug: true}\n  debug: false\n", ""},
		{"after a merge", "server:\n  <<: {debug: true}\n  debug: false\n  debug: true\n", `c.yaml:4: server: field "debug" is set twice (first on line 3)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c config
			_, err := Decode("c.yaml", []byte(tt.give), &c, func(string) string { return "" })
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Decode = %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Decode = %v, want %q", err, tt.want)
			}
		})
	}
}
