package tokens

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The adversarial tables of the strict JOSE checks (jose.go). Every token
// here carries a valid signature over exactly the text sent, as an issuer
// (or an attacker holding a signing key of a less trusted context) would
// produce it, so a rejection is the strictness check and nothing else. The
// controls at the top of each table are accepted, so the builders make
// tokens that pass when nothing is wrong.

// defaultHeader is the JOSE header of the fixture's RSA key.
const defaultHeader = `{"alg":"RS256","kid":"rsa","typ":"JWT"}`

// claimsText is a valid claims set for testIssuer at t0 as JSON text. kv
// pairs are a member name and its raw JSON value: a name already present
// gets the new value in place, "" as the value drops it, a new name is
// appended.
func claimsText(kv ...string) string {
	base := [][2]string{
		{"iss", strconv.Quote(testIssuer)}, {"sub", `"user-1"`}, {"aud", `"api"`},
		{"iat", strconv.FormatInt(t0.Unix(), 10)}, {"nbf", strconv.FormatInt(t0.Unix(), 10)},
		{"exp", strconv.FormatInt(t0.Add(time.Hour).Unix(), 10)},
	}
	for i := 0; i < len(kv); i += 2 {
		found := false
		for j := range base {
			if base[j][0] == kv[i] {
				base[j][1], found = kv[i+1], true
			}
		}
		if !found {
			base = append(base, [2]string{kv[i], kv[i+1]})
		}
	}
	var b strings.Builder
	b.WriteByte('{')
	for _, m := range base {
		if m[1] == "" {
			continue
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(m[0]) + ":" + m[1])
	}
	b.WriteByte('}')
	return b.String()
}

// withRaw inserts raw member text before the closing brace of a JSON object.
func withRaw(obj, raw string) string { return obj[:len(obj)-1] + "," + raw + "}" }

// jws signs the segment texts header.payload exactly as given (canonical or
// not) with the fixture's RSA key and appends the canonical signature.
func jws(t testing.TB, header, payload string) string {
	t.Helper()
	in := header + "." + payload
	sig, err := jwt.SigningMethodRS256.Sign(in, getKeys(t).rsa)
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + b64(sig)
}

// jwsJSON is jws over the canonical encodings of header and claims JSON.
func jwsJSON(t testing.TB, header, claims string) string {
	t.Helper()
	return jws(t, b64([]byte(header)), b64([]byte(claims)))
}

// padJSON adds spaces before the closing brace of obj until its length is
// rem modulo 3, which makes its base64url encoding 0, 2 or 3 characters
// long modulo 4 (for rem 0, 1, 2).
func padJSON(obj string, rem int) string {
	for len(obj)%3 != rem {
		obj = obj[:len(obj)-1] + " }"
	}
	return obj
}

// dirtyTail sets an unused low bit of the last character of a segment whose
// length is 2 or 3 modulo 4: the lenient decoder reads the same bytes.
func dirtyTail(t testing.TB, seg string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if n := len(seg) % 4; n != 2 && n != 3 {
		t.Fatalf("segment length %d has no unused bits", len(seg))
	}
	v := strings.IndexByte(alphabet, seg[len(seg)-1])
	out := seg[:len(seg)-1] + string(alphabet[v|1])
	a, err1 := base64.RawURLEncoding.DecodeString(seg)
	b, err2 := base64.RawURLEncoding.DecodeString(out)
	if err1 != nil || err2 != nil || string(a) != string(b) {
		t.Fatalf("dirtyTail does not alias: %v %v", err1, err2)
	}
	return out
}

// stdAlphabet re-encodes a JSON object with '+' and '/' for '-' and '_',
// after adding a member whose text makes the URL encoding contain them.
func stdAlphabet(t testing.TB, obj string) string {
	t.Helper()
	for pad := range 3 {
		s := b64([]byte(withRaw(obj, `"x":"`+strings.Repeat(" ", pad)+`???>>>~~~"`)))
		if strings.ContainsAny(s, "-_") {
			return strings.NewReplacer("-", "+", "_", "/").Replace(s)
		}
	}
	t.Fatal("no '-' or '_' in any alignment")
	return ""
}

// mutateSig rewrites the signature segment of a token.
func mutateSig(tok string, f func(string) string) string {
	i := strings.LastIndexByte(tok, '.')
	return tok[:i+1] + f(tok[i+1:])
}

func insertAt(s string, i int, x string) string { return s[:i] + x + s[i:] }

type joseCase struct {
	name string
	give string
	want error // nil: accepted
}

func runJOSECases(t *testing.T, v verifier, cases []joseCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.give)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("rejected a valid token: %v", err)
				}
				if p.Subject == "" {
					t.Fatalf("principal without subject: %+v", p)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrInvalid) || Reason(err) != Reason(tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if len(tt.give) > 8 && strings.Contains(err.Error(), tt.give) {
				t.Fatal("error repeats the token")
			}
		})
	}
}

func TestJOSECrit(t *testing.T) {
	f := newJWTFixture(t)
	h := func(extra string) string { return withRaw(defaultHeader, extra) }
	c := claimsText()
	runJOSECases(t, f.v, []joseCase{
		{"control: no crit, no b64", jwsJSON(t, defaultHeader, c), nil},
		{"control: unknown non-critical header", jwsJSON(t, h(`"x-trace":"1"`), c), nil},
		{"crit names an unknown extension that is present", jwsJSON(t, h(`"crit":["exp"],"exp":1795000000`), c), ErrUnsupportedExtension},
		{"crit names b64, b64 false (RFC 7797)", jwsJSON(t, h(`"crit":["b64"],"b64":false`), c), ErrUnsupportedExtension},
		{"crit names b64, b64 true", jwsJSON(t, h(`"crit":["b64"],"b64":true`), c), ErrUnsupportedExtension},
		{"b64 false without crit", jwsJSON(t, h(`"b64":false`), c), ErrUnsupportedExtension},
		{"b64 true without crit", jwsJSON(t, h(`"b64":true`), c), ErrUnsupportedExtension},
		{"crit empty array", jwsJSON(t, h(`"crit":[]`), c), ErrUnsupportedExtension},
		{"crit a string, not an array", jwsJSON(t, h(`"crit":"exp","exp":1`), c), ErrUnsupportedExtension},
		{"crit of a number", jwsJSON(t, h(`"crit":[1]`), c), ErrUnsupportedExtension},
		{"crit null", jwsJSON(t, h(`"crit":null`), c), ErrUnsupportedExtension},
		{"crit names a registered parameter", jwsJSON(t, h(`"crit":["alg"]`), c), ErrUnsupportedExtension},
		{"crit names an absent parameter", jwsJSON(t, h(`"crit":["x-absent"]`), c), ErrUnsupportedExtension},
		{"crit spelled with an escape", jwsJSON(t, h(`"\u0063rit":["x"],"x":1`), c), ErrUnsupportedExtension},
		{"crit in an HS256 token", hsToken(t, h(`"crit":["x"],"x":1`)), ErrUnsupportedExtension},
		{"crit in a nested object is data, not a header", jwsJSON(t, h(`"jwk_hint":{"crit":["x"]}`), c), nil},
	})
}

// hsToken signs the header with the "hs" issuer's HMAC key over claims
// for that issuer.
func hsToken(t testing.TB, header string) string {
	t.Helper()
	header = strings.Replace(strings.Replace(header, `"RS256"`, `"HS256"`, 1), `"rsa"`, `"hs"`, 1)
	in := b64([]byte(header)) + "." + b64([]byte(claimsText("iss", `"hs"`, "aud", "")))
	m := hmac.New(sha256.New, getKeys(t).hmac)
	m.Write([]byte(in))
	return in + "." + b64(m.Sum(nil))
}

func TestJOSENumericDate(t *testing.T) {
	f := newJWTFixture(t)
	now := t0.Unix()
	cases := []joseCase{
		{"control: integers", jwsJSON(t, defaultHeader, claimsText()), nil},
		{"control: fractions (RFC 7519 allows them)", jwsJSON(t, defaultHeader, claimsText("iat", fmt.Sprintf("%d.5", now), "nbf", fmt.Sprintf("%d.25", now))), nil},
		{"control: exponent form", jwsJSON(t, defaultHeader, claimsText("exp", strconv.FormatFloat(float64(now+3600), 'e', -1, 64))), nil},
		{"control: exp at the last second of 9999", jwsJSON(t, defaultHeader, claimsText("exp", "253402300799")), nil},
		{"control: nbf and iat at the epoch", jwsJSON(t, defaultHeader, claimsText("nbf", "0", "iat", "0")), nil},
		{"control: no nbf, no iat", jwsJSON(t, defaultHeader, claimsText("nbf", "", "iat", "")), nil},
		{"exp 0 is a date, long past", jwsJSON(t, defaultHeader, claimsText("exp", "0")), ErrExpired},
	}
	// The int64 wrap-around: each of these read as a time before t0 by
	// the library's int64(float64) conversion.
	for _, name := range []string{"nbf", "iat", "exp"} {
		for _, v := range []string{
			"1e19", "9223372036854775808", "18446744073709551616", "9.3e18", "1e300", "1e400",
			"253402300800", "253402300799.5", "99999999999999999999999", "-1", "-9.3e18", "-0",
			`"1795000000"`, "null", "true", "[1795000000]", `{"$date":1795000000}`,
		} {
			cases = append(cases, joseCase{name + "=" + v, jwsJSON(t, defaultHeader, claimsText(name, v)), ErrBadNumericDate})
		}
	}
	runJOSECases(t, f.v, cases)
}

func TestJOSEBase64URL(t *testing.T) {
	f := newJWTFixture(t)
	c := claimsText()
	enc := func(s string) string { return b64([]byte(s)) }
	good := jwsJSON(t, defaultHeader, c)
	h2 := enc(padJSON(defaultHeader, 1)) // 2 mod 4: 4 unused bits
	h3 := enc(padJSON(defaultHeader, 2)) // 3 mod 4: 2 unused bits
	h0 := enc(padJSON(defaultHeader, 0)) // 0 mod 4
	p2 := enc(padJSON(c, 1))
	p3 := enc(padJSON(c, 2))
	p0 := enc(padJSON(c, 0))
	runJOSECases(t, f.v, []joseCase{
		{"control: canonical, 2 mod 4", jws(t, h2, p2), nil},
		{"control: canonical, 3 mod 4", jws(t, h3, p3), nil},
		{"control: canonical, 0 mod 4", jws(t, h0, p0), nil},
		// header
		{"header padded", jws(t, h2+"==", p0), ErrNonCanonicalEncoding},
		{"header padded once", jws(t, h3+"=", p0), ErrNonCanonicalEncoding},
		{"header trailing bits, 2 mod 4", jws(t, dirtyTail(t, h2), p0), ErrNonCanonicalEncoding},
		{"header trailing bits, 3 mod 4", jws(t, dirtyTail(t, h3), p0), ErrNonCanonicalEncoding},
		{"header standard alphabet", jws(t, stdAlphabet(t, defaultHeader), p0), ErrNonCanonicalEncoding},
		{"header with LF", jws(t, insertAt(h0, 8, "\n"), p0), ErrNonCanonicalEncoding},
		{"header with CR LF", jws(t, insertAt(h0, 8, "\r\n"), p0), ErrNonCanonicalEncoding},
		{"header 1 mod 4", jws(t, h0+"A", p0), ErrNonCanonicalEncoding},
		// payload
		{"payload padded", jws(t, h0, p2+"=="), ErrNonCanonicalEncoding},
		{"payload trailing bits, 2 mod 4", jws(t, h0, dirtyTail(t, p2)), ErrNonCanonicalEncoding},
		{"payload trailing bits, 3 mod 4", jws(t, h0, dirtyTail(t, p3)), ErrNonCanonicalEncoding},
		{"payload standard alphabet", jws(t, h0, stdAlphabet(t, c)), ErrNonCanonicalEncoding},
		{"payload with LF", jws(t, h0, insertAt(p0, 20, "\n")), ErrNonCanonicalEncoding},
		{"payload with space", jws(t, h0, insertAt(p0, 20, " ")), ErrNonCanonicalEncoding},
		{"payload with tab", jws(t, h0, insertAt(p0, 20, "\t")), ErrNonCanonicalEncoding},
		{"payload 1 mod 4", jws(t, h0, p0+"A"), ErrNonCanonicalEncoding},
		// signature (RS256: 256 bytes, 342 characters, 2 mod 4)
		{"signature padded", mutateSig(good, func(s string) string { return s + "==" }), ErrNonCanonicalEncoding},
		{"signature trailing bits", mutateSig(good, func(s string) string { return dirtyTail(t, s) }), ErrNonCanonicalEncoding},
		{"signature standard alphabet", mutateSig(good, func(s string) string {
			if !strings.ContainsAny(s, "-_") {
				t.Fatal("signature without '-' or '_'")
			}
			return strings.NewReplacer("-", "+", "_", "/").Replace(s)
		}), ErrNonCanonicalEncoding},
		{"signature with LF", mutateSig(good, func(s string) string { return insertAt(s, 100, "\n") }), ErrNonCanonicalEncoding},
		{"signature with CR", mutateSig(good, func(s string) string { return insertAt(s, 100, "\r") }), ErrNonCanonicalEncoding},
		{"signature 1 mod 4", mutateSig(good, func(s string) string { return s + "AAA" }), ErrNonCanonicalEncoding},
		{"signature not base64url at all", mutateSig(good, func(s string) string { return "%%%" }), ErrNonCanonicalEncoding},
	})
}

func TestJOSEDuplicates(t *testing.T) {
	f := newJWTFixture(t)
	c := claimsText()
	many := c
	for i := range 20 {
		many = withRaw(many, fmt.Sprintf(`"m%d":%d`, i, i))
	}
	runJOSECases(t, f.v, []joseCase{
		{"control: same name at different depths", jwsJSON(t, defaultHeader, claimsText("sub", `"user-1"`, "ctx", `{"sub":{"sub":1},"list":[{"a":1},{"a":2}]}`)), nil},
		{"control: 26 distinct members", jwsJSON(t, defaultHeader, many), nil},
		{"control: names differing only in case", jwsJSON(t, defaultHeader, claimsText("Sub", `"x"`, "SUB", `"y"`)), nil},
		// header
		{"header kid twice", jwsJSON(t, withRaw(defaultHeader, `"kid":"ec"`), c), ErrDuplicateMember},
		{"header alg twice", jwsJSON(t, withRaw(defaultHeader, `"alg":"none"`), c), ErrDuplicateMember},
		{"header kid twice, one escaped", jwsJSON(t, withRaw(defaultHeader, `"\u006bid":"rsa"`), c), ErrDuplicateMember},
		{"header crit twice", jwsJSON(t, withRaw(defaultHeader, `"crit":["x"],"crit":["x"]`), c), ErrDuplicateMember},
		{"header duplicate inside a nested object", jwsJSON(t, withRaw(defaultHeader, `"jwk":{"kty":"RSA","kty":"EC"}`), c), ErrDuplicateMember},
		// claims
		{"sub twice", jwsJSON(t, defaultHeader, withRaw(c, `"sub":"admin"`)), ErrDuplicateMember},
		{"iss twice", jwsJSON(t, defaultHeader, withRaw(c, `"iss":"https://evil.example"`)), ErrDuplicateMember},
		{"exp twice, the first out of range", jwsJSON(t, defaultHeader, withRaw(claimsText("exp", "1e400"), `"exp":1795003600`)), ErrBadNumericDate},
		{"nbf twice, both valid", jwsJSON(t, defaultHeader, withRaw(c, `"nbf":0`)), ErrDuplicateMember},
		{"scope twice", jwsJSON(t, defaultHeader, withRaw(claimsText("scope", `"read"`), `"scope":"admin"`)), ErrDuplicateMember},
		{"sub twice, one escaped", jwsJSON(t, defaultHeader, withRaw(c, `"s\u0075b":"admin"`)), ErrDuplicateMember},
		{"names equal after unescaping \\/", jwsJSON(t, defaultHeader, withRaw(claimsText("a/b", "1"), `"a\/b":2`)), ErrDuplicateMember},
		{"duplicate in a nested object", jwsJSON(t, defaultHeader, claimsText("ctx", `{"role":"user","role":"admin"}`)), ErrDuplicateMember},
		{"duplicate in an object in an array", jwsJSON(t, defaultHeader, claimsText("groups", `[{"n":"a"},{"n":"b","n":"c"}]`)), ErrDuplicateMember},
		{"duplicate after 20 members (map path)", jwsJSON(t, defaultHeader, withRaw(many, `"m17":0`)), ErrDuplicateMember},
		// structure
		{"deep nesting within max_token_bytes", jwsJSON(t, defaultHeader, claimsText("deep", strings.Repeat("[", 2000)+strings.Repeat("]", 2000))), nil},
		{"invalid UTF-8 in a claim", jwsJSON(t, defaultHeader, claimsText("name", "\"\xff\xfe\"")), ErrMalformed},
		// Escaped unpaired surrogates: encoding/json reads each as U+FFFD,
		// so "bob\ud800" and "bob\udbff" were one subject to us and two
		// to the issuer and to Java, JavaScript or Python.
		{"control: escaped surrogate pair", jwsJSON(t, defaultHeader, claimsText("sub", `"bob\ud83d\ude00"`)), nil},
		{"control: escaped backslash before u", jwsJSON(t, defaultHeader, claimsText("sub", `"bob\\ud800"`)), nil},
		{"control: escaped BMP character", jwsJSON(t, defaultHeader, claimsText("sub", `"bob\u00e9\uFFFD"`)), nil},
		{"lone high surrogate in sub", jwsJSON(t, defaultHeader, claimsText("sub", `"bob\ud800"`)), ErrMalformed},
		{"lone low surrogate in sub", jwsJSON(t, defaultHeader, claimsText("sub", `"bob\uDFFF"`)), ErrMalformed},
		{"low before high", jwsJSON(t, defaultHeader, claimsText("sub", `"bob\udc00\ud800"`)), ErrMalformed},
		{"high followed by a non-surrogate escape", jwsJSON(t, defaultHeader, claimsText("sub", `"bob\ud800\u0041"`)), ErrMalformed},
		{"high followed by a raw character", jwsJSON(t, defaultHeader, claimsText("sub", `"bob\ud800x"`)), ErrMalformed},
		{"lone surrogate after an escaped backslash", jwsJSON(t, defaultHeader, claimsText("sub", `"bob\\\ud800"`)), ErrMalformed},
		{"lone surrogate in a member name", jwsJSON(t, defaultHeader, withRaw(c, `"x\udc00":1`)), ErrMalformed},
		{"lone surrogate in a nested claim", jwsJSON(t, defaultHeader, claimsText("groups", `["a",{"b":"\ud800"}]`)), ErrMalformed},
		{"lone surrogate in the header", jwsJSON(t, withRaw(defaultHeader, `"x":"\udbff"`), c), ErrMalformed},
		{"trailing object after the claims", jwsJSON(t, defaultHeader, c+`{"sub":"admin"}`), ErrMalformed},
		{"header not an object", jwsJSON(t, `["RS256"]`, c), ErrMalformed},
	})
}

func TestTicketStrict(t *testing.T) {
	f := newTicketFixture(t)
	good := f.sign(t, "k1", validTicket())
	parts := strings.Split(good, ".")
	iat, exp := t0.Unix(), t0.Add(time.Hour).Unix()
	payload := func(extra string) string {
		s := fmt.Sprintf(`{"uid":"u-42","iat":%d,"exp":%d}`, iat, exp)
		if extra != "" {
			s = withRaw(s, extra)
		}
		return s
	}
	seg2 := b64([]byte(padJSON(payload(""), 1)))
	seg3 := b64([]byte(padJSON(payload(""), 2)))
	cases := []joseCase{
		{"control", resign(t, f, payload("")), nil},
		{"control: payload 2 mod 4", resignRaw(f, seg2), nil},
		{"control: payload 3 mod 4", resignRaw(f, seg3), nil},
		{"control: nbf at the epoch", resign(t, f, payload(`"nbf":0`)), nil},
		{"control: exp at the last second of 9999", resign(t, f, fmt.Sprintf(`{"uid":"u-42","iat":%d,"exp":253402300799}`, iat)), nil},
		// encoding
		{"payload trailing bits, 2 mod 4", resignRaw(f, dirtyTail(t, seg2)), ErrNonCanonicalEncoding},
		{"payload trailing bits, 3 mod 4", resignRaw(f, dirtyTail(t, seg3)), ErrNonCanonicalEncoding},
		{"payload with LF", resignRaw(f, insertAt(seg2, 10, "\n")), ErrNonCanonicalEncoding},
		{"payload padded", resignRaw(f, seg2+"=="), ErrNonCanonicalEncoding},
		{"payload standard alphabet", resignRaw(f, stdAlphabet(t, payload(""))), ErrNonCanonicalEncoding},
		{"signature with LF", strings.Join(parts[:3], ".") + "." + insertAt(parts[3], 10, "\n"), ErrNonCanonicalEncoding},
		{"signature trailing bits", strings.Join(parts[:3], ".") + "." + dirtyTail(t, parts[3]), ErrNonCanonicalEncoding},
		// duplicates
		{"uid twice", resign(t, f, payload(`"uid":"admin"`)), ErrDuplicateMember},
		{"exp twice", resign(t, f, payload(`"exp":99999999999`)), ErrDuplicateMember},
		{"uid twice, escaped", resign(t, f, payload(`"\u0075id":"admin"`)), ErrDuplicateMember},
		{"duplicate in a nested claim", resign(t, f, payload(`"ctx":{"a":1,"a":2}`)), ErrDuplicateMember},
		// escaped unpaired surrogates (read as U+FFFD by encoding/json)
		{"lone surrogate in uid", resign(t, f, strings.Replace(payload(""), `"u-42"`, `"u-42\ud800"`, 1)), ErrMalformed},
		{"lone surrogate in app", resign(t, f, payload(`"app":"shop\udfff"`)), ErrMalformed},
	}
	for _, name := range []string{"iat", "exp", "nbf"} {
		for _, v := range []string{"1e19", "9223372036854775808", "253402300800", "-1", "-0", "1.7950036e9", "1795003600.0", `"1795003600"`, "null"} {
			var p string
			if name == "nbf" {
				p = payload(`"nbf":` + v)
			} else {
				p = strings.Replace(payload(""), fmt.Sprintf(`"%s":%d`, name, map[string]int64{"iat": iat, "exp": exp}[name]), `"`+name+`":`+v, 1)
			}
			cases = append(cases, joseCase{name + "=" + v, resign(t, f, p), ErrBadNumericDate})
		}
	}
	runJOSECases(t, f.v, cases)
}

// TestJOSEDepthBound: nesting up to maxJSONDepth passes the checks, one
// more is malformed, and encoding/json (which golang-jwt uses) draws the
// line at the same depth. checkJWS is called directly: such tokens are far
// over max_token_bytes.
func TestJOSEDepthBound(t *testing.T) {
	for _, tt := range []struct {
		depth int // of the claims set, which counts as 1
		want  error
	}{
		{maxJSONDepth, nil},
		{maxJSONDepth + 1, ErrMalformed},
	} {
		n := tt.depth - 1
		claims := claimsText("deep", strings.Repeat("[", n)+strings.Repeat("]", n))
		_, err := checkJWS(jwsJSON(t, defaultHeader, claims))
		if !errors.Is(err, tt.want) {
			t.Errorf("depth %d: checkJWS = %v, want %v", tt.depth, err, tt.want)
		}
		var m map[string]any
		if stdErr := json.Unmarshal([]byte(claims), &m); (stdErr == nil) != (tt.want == nil) {
			t.Errorf("depth %d: encoding/json says %v, we say %v", tt.depth, stdErr, err)
		}
	}
}

// TestREADMEListsEveryReason keeps the reason list of docs/tokens.md complete:
// every CredentialError reason declared in errors.go appears there.
func TestREADMEListsEveryReason(t *testing.T) {
	src, err := os.ReadFile("errors.go")
	if err != nil {
		t.Fatal(err)
	}
	// Verifiers that declare reasons of their own, next to their code.
	for _, f := range []string{"introspection.go", "mtls.go"} {
		more, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, more...)
	}
	readme, err := os.ReadFile("../docs/tokens.md")
	if err != nil {
		t.Fatal(err)
	}
	found := regexp.MustCompile(`Reason: "([a-z_]+)"`).FindAllSubmatch(src, -1)
	if len(found) < 18 {
		t.Fatalf("found only %d reasons in errors.go", len(found))
	}
	for _, m := range found {
		if !bytes.Contains(readme, []byte("`"+string(m[1])+"`")) {
			t.Errorf("docs/tokens.md does not list reason %s", m[1])
		}
	}
}
