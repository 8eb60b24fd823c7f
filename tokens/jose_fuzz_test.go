package tokens

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	josejson "github.com/go-jose/go-jose/v4/json"
)

// Differential fuzz targets for jose.go. Each compares our checks with an
// oracle that does not share their code:
//
//   - canonical base64url: Go's strict decoder, then re-encoding, must give
//     the input back;
//   - JSON shape (object, UTF-8, depth, trailing data): encoding/json;
//   - duplicate member names: go-jose's fork of encoding/json, which
//     refuses duplicate keys at every depth after unescaping;
//   - the raw text of each top-level member: encoding/json's own value;
//   - crit/b64: the member set encoding/json decodes;
//   - NumericDate ranges: exact rational arithmetic (math/big).
//
// They are fast and deterministic, for `make fuzz-smoke`.

func FuzzCanonicalBase64URL(f *testing.F) {
	for _, s := range []string{"", "A", "AA", "AB", "AAA", "AAB", "AAAA", "e30", "e30=", "e3=", "e3\n0",
		"ab+/", "ab-_", "eyJhbGciOiJSUzI1NiJ9", "Pz8_", "Pz8/", " e30", "e30 ", "\re30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := base64.RawURLEncoding.Strict().DecodeString(s)
		want := err == nil && base64.RawURLEncoding.EncodeToString(b) == s
		if got := canonicalBase64URL(s); got != want {
			t.Fatalf("canonicalBase64URL(%q) = %v, oracle %v", s, got, want)
		}
		got, err := decodeSegment(s)
		switch {
		case want && (err != nil || !bytes.Equal(got, b)):
			t.Fatalf("decodeSegment(%q) = %x, %v; want %x", s, got, err, b)
		case !want && !errors.Is(err, ErrNonCanonicalEncoding):
			t.Fatalf("decodeSegment(%q) = %v, want ErrNonCanonicalEncoding", s, err)
		}
	})
}

func FuzzJOSEJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"alg":"RS256","kid":"rsa"}`, `{"alg":"RS256","alg":"none"}`, `{"a":{"b":1,"b":2}}`,
		`{"a":[{"b":1},{"b":1}]}`, `{"crit":["b64"],"b64":false}`, `{"\u0063rit":[]}`, `{"a":1,"\u0061":2}`,
		`{"exp":1e19,"nbf":-1,"iat":"x"}`, `{"exp":253402300799,"nbf":0,"iat":1.5}`, `{"exp":253402300799.0000001}`,
		`{"exp":1e400}`, `{"exp":-0}`, `{"exp":17950036e2}`, `{} {}`, `[]`, `{"a":"\xff"}`, `{"a":"\ud800","\udc00":1}`,
		`{"a":"\ud83d\ude00"}`, `{"a":"\\ud800"}`, `{"a":"\\\ud800"}`, `{"\udbff\udfff":"\uDC00\uD800"}`, `{"a":"\ud800\u0041"}`,
		`{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, `{"a":1,}`, `{"a" 1}`, ` {"a":1} `,
		`{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1,"o":1,"p":1,"q":1,"r":1,"a":2}`,
		`{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1,"o":1,"p":1,"q":1,"r":1,"q":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		members := map[string][]byte{}
		err := walkJSON(data, func(name, raw []byte) error {
			members[string(name)] = bytes.Clone(raw)
			return nil
		})
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDuplicateMember) {
			t.Fatalf("walkJSON: unexpected error %v", err)
		}
		// encoding/json decides validity: json.Valid takes exactly one
		// value (so no trailing data); values keep their number text.
		stdOK := json.Valid(data) && utf8.Valid(data) && bytes.TrimLeft(data, " \t\r\n")[0] == '{' && !loneSurrogateEscape(data)
		var std map[string]any
		if stdOK {
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			if err := dec.Decode(&std); err != nil {
				t.Fatalf("encoding/json refuses the valid %q: %v", data, err)
			}
			stdOK = depthOf(std) <= maxJSONDepth
		}
		var jose any
		joseErr := josejson.Unmarshal(data, &jose)
		joseDup := joseErr != nil && strings.Contains(joseErr.Error(), "duplicate key")

		switch {
		case err == nil:
			if !stdOK {
				t.Fatalf("accepted %q, which encoding/json refuses", data)
			}
			if joseDup {
				t.Fatalf("accepted %q, in which go-jose finds a duplicate: %v", data, joseErr)
			}
			if len(members) != len(std) {
				t.Fatalf("%d top-level members, encoding/json has %d", len(members), len(std))
			}
			for name, raw := range members {
				var v any
				d := json.NewDecoder(bytes.NewReader(raw))
				d.UseNumber()
				if err := d.Decode(&v); err != nil || !reflect.DeepEqual(v, std[name]) {
					t.Fatalf("member %q: raw %q decodes to %v (%v), encoding/json has %v", name, raw, v, err, std[name])
				}
			}
			checkHeaderOracle(t, data, std)
			checkClaimsOracle(t, data, std, false)
			checkClaimsOracle(t, data, std, true)
		case errors.Is(err, ErrDuplicateMember):
			if !stdOK {
				t.Fatalf("duplicate reported in %q, which encoding/json refuses", data)
			}
			if !joseDup {
				t.Fatalf("duplicate reported in %q, go-jose says %v", data, joseErr)
			}
		default: // ErrMalformed
			if stdOK {
				t.Fatalf("refused %q as malformed, which encoding/json accepts", data)
			}
		}
	})
}

// surrogateEscapes matches, leftmost first, an escaped backslash, a
// well-formed \u surrogate pair, or a \u escape of a lone surrogate half.
var surrogateEscapes = regexp.MustCompile(`\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[dD][89a-fA-F][0-9a-fA-F]{2}`)

// loneSurrogateEscape reports an escaped unpaired surrogate in valid JSON
// text (where a backslash only occurs inside strings): encoding/json turns
// it into U+FFFD, so it is the oracle's own check, by regular expression.
func loneSurrogateEscape(data []byte) bool {
	for _, m := range surrogateEscapes.FindAll(data, -1) {
		if len(m) == 6 {
			return true
		}
	}
	return false
}

// checkHeaderOracle: a header without duplicates is refused for crit or b64
// exactly when encoding/json finds either member.
func checkHeaderOracle(t *testing.T, data []byte, std map[string]any) {
	t.Helper()
	_, crit := std["crit"]
	_, b := std["b64"]
	err := checkJOSEHeader(data)
	if (crit || b) != errors.Is(err, ErrUnsupportedExtension) || (!crit && !b && err != nil) {
		t.Fatalf("checkJOSEHeader(%q) = %v (crit %v, b64 %v)", data, err, crit, b)
	}
}

// checkClaimsOracle: a claims set without duplicates is accepted exactly
// when each of exp, nbf and iat it has is a NumericDate in range by exact
// arithmetic, and the times agree with it.
func checkClaimsOracle(t *testing.T, data []byte, std map[string]any, integral bool) {
	t.Helper()
	times, err := checkClaims(data, integral)
	if err != nil && !errors.Is(err, ErrBadNumericDate) {
		t.Fatalf("checkClaims(%q): unexpected %v", data, err)
	}
	ok := true
	for _, name := range []string{"exp", "nbf", "iat"} {
		v, present := std[name]
		if !present {
			continue
		}
		sec, valid, sure := numericDateOracle(v, integral)
		if !sure {
			return // too close to a bound for float64 to settle it
		}
		ok = ok && valid
		if err != nil || !valid {
			continue
		}
		got := map[string]int64{"exp": times.exp.Unix(), "nbf": times.nbf.Unix(), "iat": times.iat.Unix()}[name]
		if d := got - sec; d < -1 || d > 1 || (integral && d != 0) {
			t.Fatalf("%s of %q = %d, exact %d", name, data, got, sec)
		}
	}
	if ok != (err == nil) {
		t.Fatalf("checkClaims(%q, integral=%v) = %v, oracle valid=%v", data, integral, err, ok)
	}
	if err == nil {
		_, hasExp := std["exp"]
		_, hasIat := std["iat"]
		if times.hasExp != hasExp || times.hasIat != hasIat {
			t.Fatalf("presence of exp/iat in %q: %v/%v", data, times.hasExp, times.hasIat)
		}
	}
}

// numericDateOracle decides a NumericDate with big.Rat. sure is false when
// a float64 reading could round across a bound, or the exponent is too
// large to evaluate cheaply.
func numericDateOracle(v any, integral bool) (sec int64, valid, sure bool) {
	n, isNum := v.(json.Number)
	if !isNum {
		return 0, false, true
	}
	s := string(n)
	if strings.HasPrefix(s, "-") {
		return 0, false, true
	}
	if integral && strings.ContainsAny(s, ".eE") {
		return 0, false, true
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 && len(strings.TrimLeft(s[i+1:], "+-0")) > 3 {
		return 0, false, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, false, false
	}
	maxR := new(big.Rat).SetInt64(maxNumericDate)
	if !strings.ContainsAny(s, ".eE") {
		return r.Num().Int64(), r.Cmp(maxR) <= 0, true
	}
	// Within a millisecond of a bound, float64 rounding may decide.
	eps := big.NewRat(1, 1000)
	if d := new(big.Rat).Sub(r, maxR); d.Abs(d).Cmp(eps) < 0 || r.Cmp(eps) < 0 {
		return 0, false, false
	}
	return new(big.Int).Quo(r.Num(), r.Denom()).Int64(), r.Cmp(maxR) <= 0, true
}

// depthOf is the nesting depth of a decoded JSON value (an object is 1).
func depthOf(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			d = max(d, depthOf(e))
		}
	case []any:
		for _, e := range x {
			d = max(d, depthOf(e))
		}
	default:
		return 0
	}
	return d + 1
}
