package authz_test

// The gateway in front of the service, modelled: what the Istio ingress
// gateway's Envoy does to :path before ext_authz sees it, under the
// meshConfig.pathNormalization mode deploy/ configures. Sources (read, not
// guessed):
//
//   - Istio pilot (networking/core listener builder): NONE sets
//     normalize_path false; BASE (and the default) normalize_path true;
//     MERGE_SLASHES adds merge_slashes; DECODE_AND_MERGE_SLASHES adds
//     path_with_escaped_slashes_action UNESCAPE_AND_FORWARD. All others
//     keep KEEP_UNCHANGED.
//   - Envoy ConnectionManagerUtility::maybeNormalizePath: a '#' anywhere
//     in :path is rejected (http_reject_path_with_fragment); then escaped
//     slashes (PathUtil::unescapeSlashes: %2F to '/', %5C to '\');
//     then normalize_path (PathUtil::canonicalPath: googleurl
//     url::CanonicalizePath on the part before '?'); then merge_slashes
//     (PathUtil::mergeSlashes). A :path not starting with '/' is answered
//     404 before that (AbsolutePath).
//   - url/url_canon_path.cc (googleurl/chromium): the kPathCharLookup
//     table, IsDot (also "%2e"), ClassifyAfterDot, BackUpToPreviousSlash,
//     '\' to '/', unescape of the UNESCAPE class, CheckForNestedEscapes.
//
// TestGatewayModelMatchesIstio checks the model against the expectations
// of Istio's own path normalization integration test.

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
)

// gatewayMode is one meshConfig.pathNormalization.normalization.
type gatewayMode struct {
	normalize, merge, unescapeSlashes bool
}

var gatewayModes = map[string]gatewayMode{
	"NONE":                     {},
	"BASE":                     {normalize: true},
	"DEFAULT":                  {normalize: true},
	"MERGE_SLASHES":            {normalize: true, merge: true},
	"DECODE_AND_MERGE_SLASHES": {normalize: true, merge: true, unescapeSlashes: true},
}

// gateway returns the :path Envoy hands to ext_authz (and the upstream),
// or ok false when Envoy answers the request itself.
func (m gatewayMode) gateway(raw string) (string, bool) {
	if raw == "" || raw[0] != '/' || strings.IndexByte(raw, '#') >= 0 {
		return "", false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c == 0x7f {
			return "", false // the HTTP/1 and HTTP/2 codecs refuse these
		}
	}
	path, query, hasQuery := strings.Cut(raw, "?")
	if m.unescapeSlashes {
		path = strings.NewReplacer("%2F", "/", "%2f", "/", "%5C", `\`, "%5c", `\`).Replace(path)
	}
	if m.normalize {
		path = chromiumCanonicalizePath(path)
	}
	if m.merge && strings.Contains(path, "//") {
		var parts []string
		for _, s := range strings.Split(path, "/") {
			if s != "" {
				parts = append(parts, s)
			}
		}
		out := strings.Join(parts, "/")
		if strings.HasPrefix(path, "/") {
			out = "/" + out
		}
		if strings.HasSuffix(path, "/") {
			out += "/"
		}
		path = out
	}
	if hasQuery {
		path += "?" + query
	}
	return path, true
}

// The character classes of url_canon_path.cc's kPathCharLookup.
const (
	cPass     = 0
	cSpecial  = 1
	cEscape   = 2 | cSpecial
	cUnescape = 4
)

var chromiumPathChars = func() (t [256]byte) {
	for c := 0; c < 256; c++ {
		switch {
		case c <= ' ' || c >= 0x7f:
			t[c] = cEscape
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '~':
			t[c] = cUnescape
		case c == '.':
			t[c] = cSpecial
		case strings.IndexByte(`"#%<>?\^`+"`{|}", byte(c)) >= 0:
			t[c] = cEscape
		default: // ! $ & ' ( ) * + , / : ; = @ [ ]
			t[c] = cPass
		}
	}
	return t
}()

func chromiumIsDot(s string, i int) int {
	if s[i] == '.' {
		return 1
	}
	if s[i] == '%' && i+3 <= len(s) && s[i+1] == '2' && (s[i+2] == 'e' || s[i+2] == 'E') {
		return 3
	}
	return 0
}

func chromiumDecodeEscaped(s []byte, i int) (byte, bool) {
	if i+3 > len(s) || !isHexDigit(s[i+1]) || !isHexDigit(s[i+2]) {
		return 0, false
	}
	var v byte
	for _, c := range s[i+1 : i+3] {
		v <<= 4
		switch {
		case c <= '9':
			v |= c - '0'
		case c >= 'a':
			v |= c - 'a' + 10
		default:
			v |= c - 'A' + 10
		}
	}
	return v, true
}

// chromiumCanonicalizePath is url::CanonicalizePath for an 8-bit path
// (DoPath + DoPartialPathInternal), path_begin_in_output 0.
func chromiumCanonicalizePath(spec string) string {
	isSlash := func(c byte) bool { return c == '/' || c == '\\' }
	out := make([]byte, 0, len(spec)+1)
	if spec == "" {
		return "/"
	}
	if !isSlash(spec[0]) {
		out = append(out, '/')
	}
	lastInvalid := -1
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		flags := chromiumPathChars[c]
		if flags&cSpecial == 0 {
			out = append(out, c)
			continue
		}
		if dl := chromiumIsDot(spec, i); dl > 0 {
			if len(out) > 0 && out[len(out)-1] == '/' {
				after := i + dl
				const notDir, cur, up = 0, 1, 2
				disp, consumed := notDir, 0
				switch {
				case after == len(spec):
					disp = cur
				case isSlash(spec[after]):
					disp, consumed = cur, 1
				default:
					if d2 := chromiumIsDot(spec, after); d2 > 0 {
						switch a2 := after + d2; {
						case a2 == len(spec):
							disp, consumed = up, d2
						case isSlash(spec[a2]):
							disp, consumed = up, d2+1
						}
					}
				}
				switch disp {
				case notDir:
					out = append(out, '.')
					i += dl - 1
				case cur:
					i += dl + consumed - 1
				case up:
					// BackUpToPreviousSlash
					j := len(out) - 1
					if j > 0 {
						j--
						for out[j] != '/' && j > 0 {
							j--
						}
						out = out[:j+1]
					}
					if lastInvalid >= len(out) {
						lastInvalid = -1
					}
					i += dl + consumed - 1
				}
			} else {
				out = append(out, '.')
				i += dl - 1
			}
			continue
		}
		switch {
		case c == '\\':
			out = append(out, '/')
		case c == '%':
			v, ok := chromiumDecodeEscaped([]byte(spec), i)
			if !ok {
				lastInvalid = len(out)
				out = append(out, '%')
				continue
			}
			i += 2
			if chromiumPathChars[v]&cUnescape != 0 {
				out = append(out, v)
				if lastInvalid >= 0 && lastInvalid+3 >= len(out) {
					out = chromiumCheckNestedEscapes(spec, i+1, lastInvalid, out)
				}
			} else {
				out = append(out, '%', spec[i-1], spec[i])
			}
		case flags&cEscape == cEscape:
			out = append(out, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		}
	}
	return string(out)
}

// chromiumCheckNestedEscapes: "%%30%30" must not become "%00".
func chromiumCheckNestedEscapes(spec string, next, lastInvalid int, out []byte) []byte {
	length := len(out)
	lastUnescaped := out[length-1]
	appendNext := lastInvalid == length-2
	if appendNext {
		if next == len(spec) || spec[next] >= 0x80 {
			return out
		}
		out = append(out, spec[next])
	}
	if _, ok := chromiumDecodeEscaped(out, lastInvalid); ok {
		if !appendNext {
			out = append(out, out[lastInvalid+1])
		}
		out[lastInvalid+1], out[lastInvalid+2] = '2', '5'
		out = append(out, lastUnescaped)
	} else if appendNext {
		out = out[:length]
	}
	return out
}

// The expectations of Istio's path normalization integration test
// (tests/integration/pilot, TestPathNormalization), for the modes that
// normalise.
func TestGatewayModelMatchesIstio(t *testing.T) {
	common := [][2]string{
		{"/", "/"}, {"/app/", "/app/"}, {"/app/../admin", "/admin"}, {"/app", "/app"}, {"/app//", "/app/"},
		{"/xyz%30..//abc", "/xyz0../abc"}, {"/app/%2E./admin", "/admin"}, {`/app\admin`, `/app/admin`},
		{`/app/\/\/\admin`, `/app/admin`}, {`/app//../admin`, `/app/admin`}, {`/app//../../admin`, `/admin`},
	}
	tests := map[string][][2]string{
		"MERGE_SLASHES": append(common[:len(common):len(common)],
			[2]string{"/app/%2f", "/app/%2f"}, [2]string{"/app%2f/", "/app%2f/"},
			[2]string{`/%2Fapp%5cadmin%5Cabc`, `/%2Fapp%5cadmin%5Cabc`},
			[2]string{`/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc`, `/%5Capp%2f%5c%2F..%2fadmin%5c/abc`}),
		"DECODE_AND_MERGE_SLASHES": append(common[:len(common):len(common)],
			[2]string{"/app/%2f", "/app/"}, [2]string{"/app%2f/", "/app/"},
			[2]string{`/%2Fapp%5cadmin%5Cabc`, `/app/admin/abc`},
			[2]string{`/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc`, `/app/admin/abc`},
			[2]string{`/%c0%2e%c0%2e/admin`, `/%c0.%c0./admin`}, [2]string{`/%c0%2fadmin`, `/%c0/admin`}),
	}
	for mode, cases := range tests {
		for _, c := range cases {
			if got, ok := gatewayModes[mode].gateway(c[0]); !ok || got != c[1] {
				t.Errorf("%s: gateway(%q) = %q, %v; Istio expects %q", mode, c[0], got, ok, c[1])
			}
		}
	}
	// And Envoy's own PathUtil tests.
	for _, c := range [][2]string{
		{"/a/b/../c", "/a/c"}, {"/a/b/./c", "/a/b/c"}, {"/a/b/../../../../c", "/c"}, {`/a/..\c`, "/c"},
		{"/%c0%af", "/%c0%af"}, {"/%5c%25", "/%5c%25"}, {"/a/b/%2E%2E/c", "/a/c"}, {"/a/b/%2E./c", "/a/c"},
		{"/a/b/%2E/c", "/a/b/c"}, {"/../a/b", "/a/b"}, {"/./a/b", "/a/b"}, {"/A/B/C", "/A/B/C"}, {"/a/%2F%2f/c", "/a/%2F%2f/c"},
		{"/xyz/AAAAA%%0000/abc", "/xyz/AAAAA%%0000/abc"}, // %00 is kept: googleurl no longer fails on it
		{"/%%30%30", "/%2500"},                           // CheckForNestedEscapes: not "%00"
	} {
		if got := chromiumCanonicalizePath(c[0]); got != c[1] {
			t.Errorf("chromiumCanonicalizePath(%q) = %q, want %q", c[0], got, c[1])
		}
	}
}

// upstream is how a typical upstream resolves the path it receives, as
// plain decoded text (ok false: it would answer 400 itself).
type upstream struct {
	name   string
	merges bool // merges slashes (nginx, Apache, Go's path.Clean, Tomcat)
	params bool // strips ";" path parameters first (servlet containers)
}

var upstreams = []upstream{
	{name: "nginx-like: decode, merge slashes, remove dots", merges: true},
	{name: "RFC-strict: decode, remove dots"},
	{name: "servlet: strip ;params, decode, merge, remove dots", merges: true, params: true},
}

var (
	pathParams = regexp.MustCompile(`;[^/]*`)
	slashes    = regexp.MustCompile(`/{2,}`)
)

func (u upstream) resolve(p string) (string, bool) {
	p, _, _ = strings.Cut(p, "?")
	if u.params {
		p = pathParams.ReplaceAllString(p, "")
	}
	d, err := url.PathUnescape(p)
	if err != nil {
		return "", false
	}
	if u.merges {
		d = slashes.ReplaceAllString(d, "/")
	}
	return removeDotSegments(d), true
}

// removeDotSegments is RFC 3986 5.2.4, step by step (A to E), on an input
// and an output buffer: a different algorithm from the canonicaliser's.
func removeDotSegments(in string) string {
	var out strings.Builder
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../") || in == "/..":
			in = "/" + in[min(len(in), 4):]
			o := out.String()
			out.Reset()
			if i := strings.LastIndexByte(o, '/'); i >= 0 {
				out.WriteString(o[:i])
			}
		case in == "." || in == "..":
			in = ""
		default:
			i := strings.IndexByte(in[1:], '/')
			if i < 0 {
				out.WriteString(in)
				in = ""
			} else {
				out.WriteString(in[:i+1])
				in = in[i+1:]
			}
		}
	}
	return out.String()
}

// modelRules is the policy of the model test, as plain data so that the
// upstream side can match it without the pipeline: exact, prefix and
// regex rules, and a catch-all allow last (the rule an evasion lands on).
var modelRules = []struct {
	name, kind, value string
	re                *regexp.Regexp
}{
	{"internal", "prefix", "/internal/", nil},
	{"admin-exact", "exact", "/admin", nil},
	{"admin", "prefix", "/admin/", nil},
	{"cafe", "prefix", "/caf\u00e9/", nil},
	{"login", "exact", "/login", nil},
	{"reports", "regex", `/reports/[0-9]+\.pdf`, regexp.MustCompile(`^(?:/reports/[0-9]+\.pdf)$`)},
	{"api", "prefix", "/api/v1/", nil},
	{"public", "prefix", "/", nil},
}

func modelPipeline(t *testing.T) *authz.Pipeline {
	t.Helper()
	var rules []authz.RuleConfig
	for _, r := range modelRules {
		rc := authz.RuleConfig{Name: r.name, Action: authz.ActionAllow}
		switch r.kind {
		case "exact":
			rc.Match.Path.Exact = r.value
		case "prefix":
			rc.Match.Path.Prefix = r.value
		case "regex":
			rc.Match.Path.Regex = r.value
		}
		rules = append(rules, rc)
	}
	p, err := authz.NewPipeline(authz.Config{Rules: rules}, nil, authz.Options{NewID: authztest.SequentialIDs()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// upstreamRule is the rule for the decoded path the upstream serves.
func upstreamRule(path string) string {
	for _, r := range modelRules {
		switch r.kind {
		case "exact":
			if path == r.value {
				return r.name
			}
		case "prefix":
			if strings.HasPrefix(path, r.value) {
				return r.name
			}
		case "regex":
			if r.re.MatchString(path) {
				return r.name
			}
		}
	}
	return ""
}

// adversarialPaths is the corpus: every path of up to three segments from
// the pieces below (spellings of the protected names, dot segments raw and
// encoded, path parameters, slashes and backslashes raw and encoded,
// fragments, overlong UTF-8, double encoding, control characters), with
// and without a trailing slash and a query.
func adversarialPaths() []string {
	pieces := []string{
		"", "admin", "%61dmin", "adm%69n", "internal", "login", "log%69n;x", "x",
		".", "..", "%2e", "%2E%2e", ".%2e", "..;", ";x", "admin;x", "login;jsessionid=1",
		"%2f", "%5c..", `\`, `..\admin`, "%C0%AE%C0%AE", "%2561dmin", "%00", "#x",
		"%3f", "%3B", "caf%C3%A9", "caf\u00e9", "reports", "1%2epdf", "api", "v1",
	}
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	var walk func(prefix string, depth int)
	walk = func(prefix string, depth int) {
		add(prefix)
		add(prefix + "/")
		if depth < 3 {
			add(prefix + "?a=/../admin")
		}
		if depth == 3 {
			return
		}
		for _, s := range pieces {
			walk(prefix+"/"+s, depth+1)
		}
	}
	walk("", 0)
	for _, p := range []string{"http://h/admin", "admin", "*", "//admin//x", "/admin/x/..", "/public/..%2fadmin"} {
		add(p)
	}
	return out
}

// TestGatewayModel runs the corpus through the modelled gateway (in the
// mode deploy/mesh/istio-operator.yaml sets) and the pipeline: for every
// path the gateway forwards, the service either refuses it (400) or picks
// the rule the upstream's own reading of the path picks.
func TestGatewayModel(t *testing.T) {
	mode := deployedPathNormalization(t)
	if _, ok := gatewayModes[mode]; ok && !gatewayModes[mode].merge {
		t.Logf("%s does not merge slashes: the guarantee holds for upstreams that merge them, not for RFC-strict ones (see TestGatewayModelEveryMode)", mode)
	}
	runGatewayModel(t, mode, gatewayModes[mode].merge)
}

// TestGatewayModelEveryMode shows why deploy/ must use a mode that merges
// slashes: under NONE and BASE, an upstream that does not merge slashes
// serves "//admin/" from a different rule than the one we judged.
func TestGatewayModelEveryMode(t *testing.T) {
	for _, mode := range []string{"NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"} {
		t.Run(mode, func(t *testing.T) {
			mismatches := runGatewayModel(t, mode, gatewayModes[mode].merge)
			if !gatewayModes[mode].merge && mismatches == 0 {
				t.Errorf("%s: expected the non-merging upstream to disagree on some path", mode)
			}
		})
	}
}

// runGatewayModel returns how many paths a non-merging upstream reads
// differently (only counted, not failed, when strict is false).
func runGatewayModel(t *testing.T, modeName string, strict bool) (nonMergingMismatches int) {
	mode, ok := gatewayModes[modeName]
	if !ok {
		t.Fatalf("pathNormalization %q: unknown mode (know NONE, BASE, DEFAULT, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)", modeName)
	}
	p := modelPipeline(t)
	var forwarded, refused, decided int
	for _, raw := range adversarialPaths() {
		P, ok := mode.gateway(raw)
		if !ok {
			continue
		}
		forwarded++
		path, query, _ := strings.Cut(P, "?")
		d := p.Decide(context.Background(), &authz.Request{Method: "GET", Host: "h", Path: path, Query: query})
		if d.Code == authz.BadRequest {
			refused++
			continue
		}
		decided++
		for _, u := range upstreams {
			U, ok := u.resolve(P)
			if !ok {
				continue
			}
			if want := upstreamRule(U); d.Rule != want {
				if !u.merges {
					nonMergingMismatches++
					if !strict {
						continue
					}
				}
				t.Errorf("%s: raw %q -> gateway %q: we matched rule %q (on %q), %s serves %q from rule %q",
					modeName, raw, P, d.Rule, path, u.name, U, want)
			}
		}
	}
	if decided == 0 || refused == 0 {
		t.Fatalf("%s: degenerate corpus: %d forwarded, %d refused, %d decided", modeName, forwarded, refused, decided)
	}
	t.Logf("%s: %d paths forwarded by the gateway: %d refused by us (400), %d decided consistently", modeName, forwarded, refused, decided)
	return nonMergingMismatches
}

// deployedPathNormalization reads meshConfig.pathNormalization.normalization
// from the Istio install in deploy/; unset means Istio's default, BASE.
func deployedPathNormalization(t *testing.T) string {
	t.Helper()
	file := filepath.Join("..", "deploy", "mesh", "istio-operator.yaml")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Spec struct {
			MeshConfig struct {
				PathNormalization struct {
					Normalization string `yaml:"normalization"`
				} `yaml:"pathNormalization"`
			} `yaml:"meshConfig"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	mode := doc.Spec.MeshConfig.PathNormalization.Normalization
	if mode == "" {
		mode = "BASE"
	}
	t.Logf("%s: meshConfig.pathNormalization.normalization = %s", file, mode)
	return mode
}
