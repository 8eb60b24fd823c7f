package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/tokens"
)

// The attack tests send the gRPC edge what an attacker (or a buggy or
// misconfigured gateway) could: oversized messages, enormous header counts,
// deep and malformed values, invalid UTF-8 at the wire level, and forged
// identity headers in every case. Each answer is judged exactly, while a
// steady stream of legitimate Checks runs beside the attacks and must get
// every answer right.

// attackResMaxRecv is the server's max_recv_message_bytes in these tests
// (the default, written out so the sizes below are derived from it).
const attackResMaxRecv = 1 << 20

// attackResConfig is baseConfig plus a deny rule and a JWT rule whose keys
// come from the quickstart's JWKS file.
func attackResConfig(t *testing.T) string {
	t.Helper()
	cfg := servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), `    - name: blocked
      match: {path: {prefix: /blocked/}}
      action: deny
    - name: jwt
      match: {path: {prefix: /jwt/}}
      action: authenticate
      authenticators: [jwt]
`)
	cfg = strings.Replace(cfg, "  drain_timeout: 5s\n", fmt.Sprintf("  drain_timeout: 5s\n  max_recv_message_bytes: %d\n", attackResMaxRecv), 1)
	return strings.Replace(cfg, "policy:\n", `  - name: jwt
    source: {authorization: Bearer}
    jwt:
      issuers:
        - issuer: https://issuer.quickstart.example
          audiences: [quickstart]
          jwks_file: `+servicetest.QuickstartKeys()+`jwks.json
policy:
`, 1)
}

// attackResCodec passes bytes through unchanged, so a test can put on the
// wire exactly what an attacker would, including what the generated client
// refuses to marshal (invalid UTF-8 in proto3 strings).
type attackResCodec struct{}

func (attackResCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (attackResCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (attackResCodec) Name() string { return "proto" }

// attackResRaw sends raw CheckRequest bytes; it returns the decoded
// response, or the RPC error.
func attackResRaw(h *harness, wire []byte, timeout time.Duration) (*authv3.CheckResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []byte
	if err := h.conn.Invoke(ctx, authv3.Authorization_Check_FullMethodName, &wire, &out, grpc.ForceCodecV2(attackResCodec{})); err != nil {
		return nil, err
	}
	resp := &authv3.CheckResponse{}
	if err := proto.Unmarshal(out, resp); err != nil {
		return nil, fmt.Errorf("response does not decode: %w", err)
	}
	return resp, nil
}

// attackResWire builds CheckRequest bytes by hand: attributes.request.http
// with the given fields. headers go to the headers map (field 3) in order,
// duplicates and all; headerMap entries ([key, value, raw_value]) go to
// header_map (field 13). Nothing is validated: strings may hold any bytes.
type attackResWire struct {
	Method, Host, Path string
	Headers            [][2]string
	HeaderMap          [][3]string
}

func (w attackResWire) bytes() []byte {
	var http []byte
	str := func(b []byte, num protowire.Number, s string) []byte {
		if s == "" {
			return b
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, s)
	}
	http = str(http, 2, w.Method)
	for _, kv := range w.Headers {
		var entry []byte
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, kv[0])
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendString(entry, kv[1])
		http = protowire.AppendTag(http, 3, protowire.BytesType)
		http = protowire.AppendBytes(http, entry)
	}
	http = str(http, 4, w.Path)
	http = str(http, 5, w.Host)
	http = str(http, 6, "https")
	if len(w.HeaderMap) > 0 {
		var hm []byte
		for _, kv := range w.HeaderMap {
			var hv []byte
			hv = str(hv, 1, kv[0])
			hv = str(hv, 2, kv[1])
			hv = str(hv, 3, kv[2])
			hm = protowire.AppendTag(hm, 1, protowire.BytesType)
			hm = protowire.AppendBytes(hm, hv)
		}
		http = protowire.AppendTag(http, 13, protowire.BytesType)
		http = protowire.AppendBytes(http, hm)
	}
	return attackResWrap(http)
}

// attackResWrap wraps HttpRequest bytes as CheckRequest{attributes{request{http}}}.
func attackResWrap(http []byte) []byte {
	req := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), http)
	attrs := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), req)
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), attrs)
}

// attackResManyHeaders builds a CheckRequest for GET shop.example.com
// /api/orders with alice's key and n filler headers, each a headers map
// entry or (headerMap) a header_map entry, all named name when name is not
// empty and distinct otherwise. With n < 0 it adds as many as fit in
// attackResMaxRecv with 1 KiB to spare. It writes one buffer directly: a
// million entries cost ~14 MB, not a million Go map entries. It returns
// the bytes and the number of filler headers.
func attackResManyHeaders(n int, headerMap bool, name string) ([]byte, int) {
	field := protowire.Number(3)
	if headerMap {
		field = 1 // HeaderMap.headers
	}
	body := make([]byte, 0, 1<<20)
	var key []byte
	entry := func(k []byte, v string) {
		body = protowire.AppendTag(body, field, protowire.BytesType)
		body = protowire.AppendVarint(body, uint64(4+len(k)+len(v)))
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendBytes(body, k)
		body = protowire.AppendTag(body, 2, protowire.BytesType)
		body = protowire.AppendString(body, v)
	}
	entry([]byte("x-api-key"), servicetest.KeyAlice)
	count := 0
	for ; n < 0 && len(body) < attackResMaxRecv-1024 || count < n; count++ {
		key = key[:0]
		if name != "" {
			key = append(key, name...)
		} else {
			key = strconv.AppendInt(append(key, 'h'), int64(count), 10)
		}
		entry(key, "v")
	}
	http := make([]byte, 0, len(body)+128)
	http = protowire.AppendTag(http, 2, protowire.BytesType)
	http = protowire.AppendString(http, "GET")
	http = protowire.AppendTag(http, 4, protowire.BytesType)
	http = protowire.AppendString(http, "/api/orders")
	http = protowire.AppendTag(http, 5, protowire.BytesType)
	http = protowire.AppendString(http, "shop.example.com")
	if headerMap {
		http = protowire.AppendTag(http, 13, protowire.BytesType)
		http = protowire.AppendBytes(http, body)
	} else {
		http = append(http, body...)
	}
	return attackResWrap(http), count
}

// attackResLegit is the legitimate traffic that runs beside the attacks: a
// rotation of requests whose right answer is known.
var attackResLegit = []struct {
	path, key string
	want      int
}{
	{"/api/orders", servicetest.KeyAlice, 200},
	{"/api/orders", "", 401},
	{"/admin/users", servicetest.KeyAlice, 403},
	{"/admin/users", servicetest.KeyAdmin, 200},
	{"/healthz", "", 200},
	{"/blocked/x", servicetest.KeyAdmin, 403},
}

func attackResLegitRequest(w, i int) *authv3.CheckRequest {
	c := attackResLegit[(w+i)%len(attackResLegit)]
	var hs [][2]string
	if c.key != "" {
		hs = append(hs, [2]string{"x-api-key", c.key})
	}
	return extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: c.path, Headers: hs, RequestID: fmt.Sprintf("legit-%d-%d", w, i)})
}

// attackResJudgeLegit fails the test unless every legitimate call got its
// right answer; it returns the summary for the results file.
func attackResJudgeLegit(t *testing.T, rs []callResult) loadStats {
	t.Helper()
	wrong := 0
	// A worker's i-th call is its i-th result in start order.
	perWorker := map[int]int{}
	for _, r := range rs {
		i := perWorker[r.Worker]
		perWorker[r.Worker]++
		want := attackResLegit[(r.Worker+i)%len(attackResLegit)].want
		if r.Err != nil || r.HTTP != want {
			wrong++
			if wrong <= 5 {
				t.Errorf("legitimate call worker %d #%d: %s, want http %d", r.Worker, i, outcome(r), want)
			}
		}
	}
	s := summarize(rs)
	if s.N < 50 {
		t.Errorf("only %d legitimate calls completed", s.N)
	}
	if wrong > 0 {
		t.Errorf("%d of %d legitimate calls answered wrongly", wrong, s.N)
	}
	return s
}

// attackResMem is the heap after a GC, for before/after records.
func attackResMem() (heapInuse, totalAlloc uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.TotalAlloc
}

func attackResMiB(b uint64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

// attackResNoPanic checks the process is whole: no panic was logged and a
// plain Check still works.
func attackResNoPanic(t *testing.T, h *harness) {
	t.Helper()
	if strings.Contains(strings.ToLower(h.logs.String()), "panic") {
		t.Errorf("a panic was logged:\n%s", h.logs.String())
	}
	resp := h.check(t, "GET", "shop.example.com", "/api/orders", [2]string{"x-api-key", servicetest.KeyAlice})
	if resp.GetStatus().GetCode() != 0 {
		t.Errorf("after the attacks a legitimate Check is denied: %v", resp)
	}
}

// TestAttackResEdge runs every attack against one server while legitimate
// load runs beside it.
func TestAttackResEdge(t *testing.T) {
	h := start(t, attackResConfig(t))
	load := startLoad(t, h.client, loadOptions{Workers: 4, Pause: 2 * time.Millisecond}, attackResLegitRequest)
	began := time.Now()

	t.Run("oversized", func(t *testing.T) { attackResOversized(t, h) })
	t.Run("many headers", func(t *testing.T) { attackResManyHeadersCases(t, h) })
	t.Run("deep values", func(t *testing.T) { attackResDeep(t, h) })
	t.Run("invalid utf8", func(t *testing.T) { attackResInvalidUTF8(t, h) })

	// Keep the load going for at least a phase even when the attacks
	// were quick, so the judged sample is not tiny.
	if rest := phase(2*time.Second) - time.Since(began); rest > 0 {
		time.Sleep(rest)
	}
	s := attackResJudgeLegit(t, load.Stop())
	t.Logf("legitimate load during the attacks: %v", s)
	attackResNoPanic(t, h)
}

func attackResOversized(t *testing.T, h *harness) {
	for _, tc := range []struct {
		name string
		wire func() []byte
	}{
		{"one 2 MiB header value", func() []byte {
			return attackResWire{Method: "GET", Host: "shop.example.com", Path: "/api/orders",
				Headers: [][2]string{{"x-api-key", servicetest.KeyAlice}, {"x-big", strings.Repeat("a", 2<<20)}}}.bytes()
		}},
		{"1,000,000 headers (~14 MiB)", func() []byte { b, _ := attackResManyHeaders(1_000_000, false, ""); return b }},
		{"1,000,000 header_map entries (~14 MiB)", func() []byte { b, _ := attackResManyHeaders(1_000_000, true, ""); return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wire := tc.wire()
			if len(wire) <= attackResMaxRecv {
				t.Fatalf("attack message is only %d bytes", len(wire))
			}
			heap0, alloc0 := attackResMem()
			s := time.Now()
			_, err := attackResRaw(h, wire, 20*time.Second)
			took := time.Since(s)
			heap1, alloc1 := attackResMem()
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("%d-byte CheckRequest: %v, want ResourceExhausted", len(wire), err)
			}
			t.Logf("RESULT oversized %s: %d bytes (limit %d) -> %v in %v; heap in use %s -> %s, allocated during the call %s",
				tc.name, len(wire), attackResMaxRecv, status.Code(err), took.Round(time.Millisecond),
				attackResMiB(heap0), attackResMiB(heap1), attackResMiB(alloc1-alloc0))
			// The same connection still serves.
			resp := h.check(t, "GET", "shop.example.com", "/api/orders", [2]string{"x-api-key", servicetest.KeyAlice})
			if resp.GetStatus().GetCode() != 0 {
				t.Fatalf("after the oversized message: %v", resp)
			}
		})
	}
}

func attackResManyHeadersCases(t *testing.T, h *harness) {
	for _, tc := range []struct {
		name      string
		headerMap bool
		same      string
	}{
		{"headers map, distinct names", false, ""},
		{"header_map, distinct names", true, ""},
		// Envoy sends repeated headers as separate header_map entries: the
		// adapter joins them, and joining must stay linear.
		{"header_map, one name repeated", true, "x-repeated"},
		// A forged identity header repeated as often as fits: still
		// removed, still alice.
		{"header_map, x-auth-subject repeated", true, "x-auth-subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wire, n := attackResManyHeaders(-1, tc.headerMap, tc.same)
			if len(wire) > attackResMaxRecv || len(wire) < attackResMaxRecv-4096 {
				t.Fatalf("message is %d bytes, want just under %d", len(wire), attackResMaxRecv)
			}
			heap0, alloc0 := attackResMem()
			s := time.Now()
			resp, err := attackResRaw(h, wire, 20*time.Second)
			took := time.Since(s)
			heap1, alloc1 := attackResMem()
			if err != nil {
				t.Fatalf("%d headers: %v", n, err)
			}
			if resp.GetStatus().GetCode() != 0 || resp.GetDynamicMetadata().GetFields()["subject"].GetStringValue() != "alice" {
				t.Fatalf("%d headers: %v, want alice allowed", n, resp.GetStatus())
			}
			if got := upstreamHeaders(resp)["x-auth-subject"]; got != "alice" {
				t.Errorf("x-auth-subject upstream = %q", got)
			}
			t.Logf("RESULT many headers %s: %d headers, %d bytes -> allowed as alice in %v; heap in use %s -> %s, allocated %s",
				tc.name, n, len(wire), took.Round(time.Millisecond), attackResMiB(heap0), attackResMiB(heap1), attackResMiB(alloc1-alloc0))
			// The time bound only says "answered, not hung": under -race
			// on a shared 2-core machine a linear pass over 80k headers
			// already takes 1-3 s. The allocation bound below is what
			// tells linear from quadratic.
			if took > 15*time.Second {
				t.Errorf("%d headers took %v", n, took)
			}
			// Decoding 1 MiB into ~80k map entries allocates ~20 MiB; the
			// quadratic join allocated 2.5-3.8 GiB. The legitimate load
			// beside it allocates a few MiB a second.
			if alloc := alloc1 - alloc0; alloc > 256<<20 {
				t.Errorf("%d headers allocated %s", n, attackResMiB(alloc))
			}
		})
	}
}

func attackResDeep(t *testing.T, h *harness) {
	signer, err := tokens.NewJWTSigner(servicetest.QuickstartKeys()+"jwt-es256.pem", "dev-es256-1", "")
	if err != nil {
		t.Fatal(err)
	}
	// The deepest JSON that fits the 8 KiB token limit: ~2,700 levels of
	// nested arrays in one claim.
	deep := json.RawMessage(strings.Repeat("[", 2700) + strings.Repeat("]", 2700))
	deepJWT, err := signer.Sign(map[string]any{
		"iss": "https://issuer.quickstart.example", "aud": "quickstart", "sub": "deep-user",
		"exp": time.Now().Add(time.Hour).Unix(), "deep": deep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(deepJWT) > tokens.DefaultMaxTokenBytes {
		t.Fatalf("deep JWT is %d bytes, over the limit", len(deepJWT))
	}
	forged := deepJWT[:strings.LastIndexByte(deepJWT, '.')+1] + strings.Repeat("A", 86)
	tooDeep := attackResJWTShaped(`{"alg":"ES256","kid":"dev-es256-1"}`, `{"iss":"https://issuer.quickstart.example","x":`+strings.Repeat("[", 12000)+strings.Repeat("]", 12000)+`}`)

	manyParams := make([]string, 10000)
	for i := range manyParams {
		manyParams[i] = fmt.Sprintf("p%d=%d", i, i)
	}
	type want struct {
		http   int
		reason string
	}
	for _, tc := range []struct {
		name    string
		path    string
		headers [][2]string
		want    want
	}{
		{"64 KiB header value beside a good key", "/api/orders", [][2]string{{"x-api-key", servicetest.KeyAlice}, {"x-long", strings.Repeat("v", 64<<10)}}, want{200, ""}},
		{"64 KiB api key", "/api/orders", [][2]string{{"x-api-key", strings.Repeat("k", 64<<10)}}, want{401, "too_large"}},
		{"JWT with 2,700-deep claim, valid signature", "/jwt/x", [][2]string{{"authorization", "Bearer " + deepJWT}}, want{200, ""}},
		{"JWT with 2,700-deep claim, forged signature", "/jwt/x", [][2]string{{"authorization", "Bearer " + forged}}, want{401, "bad_signature"}},
		{"JWT with 12,000-deep claim (over the size limit)", "/jwt/x", [][2]string{{"authorization", "Bearer " + tooDeep}}, want{401, "too_large"}},
		{"query with 10,000 params", "/api/orders?" + strings.Join(manyParams, "&"), [][2]string{{"x-api-key", servicetest.KeyAlice}}, want{200, ""}},
		{"path of 10,000 segments", "/api/" + strings.Repeat("s/", 10000), [][2]string{{"x-api-key", servicetest.KeyAlice}}, want{200, ""}},
		{"10,000 dot segments back to /api/", "/api/" + strings.Repeat("a/../", 10000) + "x", [][2]string{{"x-api-key", servicetest.KeyAlice}}, want{200, ""}},
		{"dot segments escaping into /admin/", "/api/" + strings.Repeat("../", 5000) + "admin/users", [][2]string{{"x-api-key", servicetest.KeyAlice}}, want{403, "insufficient_scope"}},
		{"encoded dot segments into /admin/", "/api/%2e%2e/admin/users", [][2]string{{"x-api-key", servicetest.KeyAlice}}, want{403, "insufficient_scope"}},
		{"encoded slash", "/api%2F..%2Fadmin/users", [][2]string{{"x-api-key", servicetest.KeyAdmin}}, want{400, "invalid_path"}},
		{"encoded backslash", "/api/..%5Cadmin/users", [][2]string{{"x-api-key", servicetest.KeyAdmin}}, want{400, "invalid_path"}},
		{"10,000 encoded slashes", "/api/" + strings.Repeat("%2f", 10000), [][2]string{{"x-api-key", servicetest.KeyAlice}}, want{400, "invalid_path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := h.client.Check(ctx, extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: tc.path, Headers: tc.headers}))
			took := time.Since(s)
			if err != nil {
				t.Fatal(err)
			}
			got := want{httpStatusOf(resp), resp.GetStatus().GetMessage()}
			if got != tc.want {
				t.Fatalf("answered %+v, want %+v", got, tc.want)
			}
			t.Logf("RESULT deep %s: http %d %s in %v", tc.name, got.http, got.reason, took.Round(time.Microsecond))
			if took > 3*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
}

// attackResJWTShaped is a JWT-shaped string with the given header and
// payload and a junk signature.
func attackResJWTShaped(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + strings.Repeat("A", 86)
}

func attackResInvalidUTF8(t *testing.T, h *harness) {
	const bad = "\xff\xfe\xc0\xaf" // not UTF-8; \xc0\xaf is an overlong '/'
	type want struct {
		grpc   codes.Code // non-OK: the RPC fails
		http   int
		reason string
	}
	alice := [2]string{"x-api-key", servicetest.KeyAlice}
	for _, tc := range []struct {
		name string
		wire attackResWire
		want want
	}{
		// proto3 strings must be UTF-8: Go's protobuf refuses the
		// message; the server's codec marks it and Check answers 400
		// unreadable_request (was: gRPC Internal, Envoy's status_on_error).
		{"header value (headers map)", attackResWire{Method: "GET", Host: "shop.example.com", Path: "/api/orders", Headers: [][2]string{alice, {"x-note", "a" + bad}}}, want{http: 400, reason: extauthz.ReasonUnreadable}},
		{"header name (headers map)", attackResWire{Method: "GET", Host: "shop.example.com", Path: "/api/orders", Headers: [][2]string{alice, {"x-" + bad, "v"}}}, want{http: 400, reason: extauthz.ReasonUnreadable}},
		{"path field", attackResWire{Method: "GET", Host: "shop.example.com", Path: "/api/" + bad, Headers: [][2]string{alice}}, want{http: 400, reason: extauthz.ReasonUnreadable}},
		{"host field", attackResWire{Method: "GET", Host: "shop" + bad + ".example.com", Path: "/api/orders", Headers: [][2]string{alice}}, want{http: 400, reason: extauthz.ReasonUnreadable}},
		{"header_map key", attackResWire{Method: "GET", Host: "shop.example.com", Path: "/api/orders", HeaderMap: [][3]string{{"x-api-key", servicetest.KeyAlice, ""}, {"x-" + bad, "v", ""}}}, want{http: 400, reason: extauthz.ReasonUnreadable}},
		// raw_value is bytes: it decodes, and the pipeline must judge it.
		{"header_map raw_value of an unrelated header", attackResWire{Method: "GET", Host: "shop.example.com", Path: "/api/orders",
			HeaderMap: [][3]string{{"x-api-key", "", servicetest.KeyAlice}, {"x-note", "", "a" + bad}}}, want{http: 200}},
		{"header_map raw_value of the credential", attackResWire{Method: "GET", Host: "shop.example.com", Path: "/api/orders",
			HeaderMap: [][3]string{{"x-api-key", "", servicetest.KeyAlice + bad}}}, want{http: 401, reason: "unknown_credential"}},
		{"header_map raw_value :path (no path field)", attackResWire{Method: "GET", Host: "shop.example.com",
			HeaderMap: [][3]string{{":path", "", "/api/" + bad + "x"}, {"x-api-key", "", servicetest.KeyAlice}}}, want{http: 400, reason: "invalid_path"}},
		{"header_map raw_value :path, overlong slash into /admin/", attackResWire{Method: "GET", Host: "shop.example.com",
			HeaderMap: [][3]string{{":path", "", "/api/..\xc0\xafadmin/users"}, {"x-api-key", "", servicetest.KeyAdmin}}}, want{http: 400, reason: "invalid_path"}},
		{"header_map raw_value :authority (no host field)", attackResWire{Method: "GET", Path: "/api/orders",
			HeaderMap: [][3]string{{":authority", "", "shop" + bad + ".example.com"}, {"x-api-key", "", servicetest.KeyAlice}}}, want{http: 400, reason: "invalid_host"}},
		{"header_map raw_value x-request-id on a denial", attackResWire{Method: "GET", Host: "shop.example.com", Path: "/api/orders",
			HeaderMap: [][3]string{{"x-request-id", "", "rid" + bad}}}, want{http: 401, reason: "missing_credential"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := attackResRaw(h, tc.wire.bytes(), 5*time.Second)
			if tc.want.grpc != codes.OK {
				if status.Code(err) != tc.want.grpc {
					t.Fatalf("got %v / %v, want gRPC %v", status.Code(err), resp.GetStatus(), tc.want.grpc)
				}
				t.Logf("RESULT invalid utf8 %s: grpc %v", tc.name, status.Code(err))
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := want{http: httpStatusOf(resp), reason: resp.GetStatus().GetMessage()}
			if got != tc.want {
				t.Fatalf("answered %+v, want %+v", got, tc.want)
			}
			// Whatever we send back is valid UTF-8 (it decoded) and holds no
			// raw attacker byte.
			if b, _ := proto.Marshal(resp); strings.Contains(string(b), bad) {
				t.Errorf("the response echoes the invalid bytes")
			}
			t.Logf("RESULT invalid utf8 %s: http %d %s", tc.name, got.http, got.reason)
		})
	}
}

// attackResHeader is one header line of an HTTP request.
type attackResHeader struct{ name, value string }

// attackResEnvoyApply applies a CheckResponse to the downstream request
// headers the way Envoy's ext_authz filter does, and returns the headers
// of the request sent upstream; ok is false when Envoy does not forward
// the request at all (any non-OK status: the denied response goes to the
// client). The semantics, from envoyproxy/envoy:
//   - Names are case-insensitive: Envoy keeps them as LowerCaseString.
//   - source/extensions/filters/common/ext_authz/ext_authz_grpc_impl.cc
//     (getAppendAction): a set deprecated `append` wins: true appends
//     (appendCopy: joined with "," onto the existing entry, or added),
//     false overwrites; otherwise append_action decides:
//     APPEND_IF_EXISTS_OR_ADD adds another entry (addCopy), ADD_IF_ABSENT
//     adds only when absent, OVERWRITE_IF_EXISTS_OR_ADD sets,
//     OVERWRITE_IF_EXISTS sets only when present.
//   - source/common/http/header_map_impl.cc (setCopy): setting replaces
//     EVERY entry of the name (remove then add; since 1.16, whose release
//     note says the first-entry-only behaviour "may have had security
//     implications in the extauth filter").
//   - source/extensions/filters/http/ext_authz/ext_authz.cc (onComplete):
//     header mutations first, then headers_to_remove, each removing every
//     entry of the name, except ":"-pseudo-headers and host
//     (HeaderUtility::isRemovableHeader).
func attackResEnvoyApply(orig []attackResHeader, resp *authv3.CheckResponse) (upstream []attackResHeader, ok bool) {
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		return nil, false
	}
	hs := make([]attackResHeader, 0, len(orig))
	for _, h := range orig {
		hs = append(hs, attackResHeader{strings.ToLower(h.name), h.value})
	}
	has := func(name string) bool {
		return slices.ContainsFunc(hs, func(h attackResHeader) bool { return h.name == name })
	}
	remove := func(name string) {
		hs = slices.DeleteFunc(hs, func(h attackResHeader) bool { return h.name == name })
	}
	set := func(name, v string) { remove(name); hs = append(hs, attackResHeader{name, v}) }
	for _, opt := range resp.GetOkResponse().GetHeaders() {
		name, v := strings.ToLower(opt.GetHeader().GetKey()), opt.GetHeader().GetValue()
		// Envoy still honours the deprecated append field before
		// append_action, so the model must too.
		if app := opt.GetAppend(); app != nil { //nolint:staticcheck // see above
			if !app.GetValue() {
				set(name, v)
				continue
			}
			if i := slices.IndexFunc(hs, func(h attackResHeader) bool { return h.name == name }); i >= 0 {
				hs[i].value += "," + v
			} else {
				hs = append(hs, attackResHeader{name, v})
			}
			continue
		}
		switch opt.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			hs = append(hs, attackResHeader{name, v})
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !has(name) {
				hs = append(hs, attackResHeader{name, v})
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			set(name, v)
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if has(name) {
				set(name, v)
			}
		}
	}
	for _, name := range resp.GetOkResponse().GetHeadersToRemove() {
		name = strings.ToLower(name)
		if strings.HasPrefix(name, ":") || name == "host" {
			continue
		}
		remove(name)
	}
	return hs, true
}

// TestAttackResEnvoyModel pins the model itself on the cases that matter.
func TestAttackResEnvoyModel(t *testing.T) {
	opt := func(k, v string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a}
	}
	orig := []attackResHeader{{"X-A", "1"}, {"x-a", "2"}, {"X-B", "3"}, {"host", "h"}}
	resp := &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{
			opt("x-a", "set", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			opt("x-c", "added", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
			opt("x-c", "again", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
			opt("x-d", "absent", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			{Header: &corev3.HeaderValue{Key: "X-B", Value: "4"}, Append: wrapperspb.Bool(true)},
		},
		HeadersToRemove: []string{"X-C", "host"},
	}}}
	got, ok := attackResEnvoyApply(orig, resp)
	want := []attackResHeader{{"x-b", "3,4"}, {"host", "h"}, {"x-a", "set"}}
	if !ok || !slices.Equal(got, want) {
		t.Errorf("upstream = %v, want %v", got, want)
	}
	if _, ok := attackResEnvoyApply(orig, &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}); ok {
		t.Error("a denial was forwarded")
	}
}

// attackResIdentityNames are the headers that carry identity in
// attackResCollisionConfig, and the credential header keys strips.
var attackResIdentityNames = []string{"x-auth-subject", "x-auth-issuer", "x-auth-method", "x-auth-app-id", "x-auth-scopes", "x-auth-team", "x-legacy-user"}

func attackResCollisionConfig(t *testing.T) string {
	cfg := attackResConfig(t)
	// also_remove written in mixed case: the config's case must not matter.
	return strings.Replace(cfg, "    claims: {team: x-auth-team}\n", "    claims: {team: X-Auth-Team}\n    also_remove: [X-Legacy-User]\n", 1)
}

// attackResForgeries are forged copies of name in several cases,
// including one already comma-joined.
func attackResForgeries(name string) []attackResHeader {
	title := []byte(name)
	for i := range title {
		if i == 0 || title[i-1] == '-' {
			title[i] -= 'a' - 'A'
		}
	}
	mixed := []byte(name)
	for i := range mixed {
		if i%2 == 1 && mixed[i] >= 'a' && mixed[i] <= 'z' {
			mixed[i] -= 'a' - 'A'
		}
	}
	return []attackResHeader{
		{string(title), "forged-title"},
		{strings.ToUpper(name), "forged-upper"},
		{string(mixed), "forged-mixed"},
		{name, "forged-a,forged-b"},
	}
}

// attackResForms are the ways the same downstream request reaches us.
var attackResForms = []struct {
	name  string
	build func(path string, hs []attackResHeader) *authv3.CheckRequest
}{
	// What Envoy sends by default: lower-case names, repeats comma-joined.
	{"envoy headers", func(path string, hs []attackResHeader) *authv3.CheckRequest {
		kv := make([][2]string, len(hs))
		for i, h := range hs {
			kv[i] = [2]string{h.name, h.value}
		}
		return extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: path, Headers: kv})
	}},
	// encode_raw_headers: one header_map entry per header line.
	{"envoy header_map", func(path string, hs []attackResHeader) *authv3.CheckRequest {
		req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: path})
		http := req.GetAttributes().GetRequest().GetHttp()
		hm := &corev3.HeaderMap{}
		for k, v := range http.GetHeaders() {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		}
		for _, h := range hs {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: strings.ToLower(h.name), RawValue: []byte(h.value)})
		}
		http.Headers, http.HeaderMap = nil, hm
		return req
	}},
	// Not Envoy: names in their original case in the headers map (case
	// collisions and all) AND every line again in header_map.
	{"raw mixed case, both fields", func(path string, hs []attackResHeader) *authv3.CheckRequest {
		req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: path})
		http := req.GetAttributes().GetRequest().GetHttp()
		hm := &corev3.HeaderMap{}
		for _, h := range hs {
			if prev, ok := http.Headers[h.name]; ok {
				http.Headers[h.name] = prev + "," + h.value
			} else {
				http.Headers[h.name] = h.value
			}
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h.name, Value: h.value})
		}
		http.HeaderMap = hm
		return req
	}},
}

// TestAttackResIdentityCollisions: forged identity headers, in every case
// and repeated, never reach the upstream; an authenticated request
// carries exactly its real identity. Judged by applying each response
// the way Envoy does.
func TestAttackResIdentityCollisions(t *testing.T) {
	h := start(t, attackResCollisionConfig(t))
	var forged []attackResHeader
	for _, n := range attackResIdentityNames {
		forged = append(forged, attackResForgeries(n)...)
	}
	type want struct {
		http     int
		reason   string
		upstream map[string][]string // identity and credential headers upstream; nil: not forwarded
	}
	none := map[string][]string{}
	for _, tc := range []struct {
		name    string
		path    string
		headers []attackResHeader
		want    want
	}{
		{"authenticated alice", "/api/orders", append([]attackResHeader{{"X-Api-Key", servicetest.KeyAlice}}, forged...),
			want{200, "", map[string][]string{"x-auth-subject": {"alice"}, "x-auth-issuer": {"api-keys"}, "x-auth-method": {"api-key"}, "x-auth-scopes": {"read"}, "x-auth-team": {"payments"}}}},
		{"authenticated admin (no team claim)", "/admin/users", append([]attackResHeader{{"x-api-key", servicetest.KeyAdmin}}, forged...),
			want{200, "", map[string][]string{"x-auth-subject": {"admin"}, "x-auth-issuer": {"api-keys"}, "x-auth-method": {"api-key"}, "x-auth-scopes": {"read admin"}}}},
		{"public allow rule", "/healthz", forged, want{200, "", none}},
		{"public allow rule with a credential", "/healthz", append([]attackResHeader{{"x-api-key", servicetest.KeyAlice}}, forged...),
			// Not verified on a public rule, so not stripped either: it is
			// the client's own header, not an identity.
			want{200, "", map[string][]string{"x-api-key": {servicetest.KeyAlice}}}},
		{"deny rule", "/blocked/x", append([]attackResHeader{{"x-api-key", servicetest.KeyAdmin}}, forged...), want{403, "denied_by_rule", nil}},
		{"insufficient scope", "/admin/users", append([]attackResHeader{{"x-api-key", servicetest.KeyAlice}}, forged...), want{403, "insufficient_scope", nil}},
		{"no credential", "/api/orders", forged, want{401, "missing_credential", nil}},
		{"credential forged beside the real one in another case", "/admin/users",
			append([]attackResHeader{{"x-api-key", servicetest.KeyAlice}, {"X-API-KEY", servicetest.KeyAdmin}}, forged...), want{401, "unknown_credential", nil}},
	} {
		for _, form := range attackResForms {
			t.Run(tc.name+"/"+form.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				resp, err := h.client.Check(ctx, form.build(tc.path, tc.headers))
				if err != nil {
					t.Fatal(err)
				}
				if got := httpStatusOf(resp); got != tc.want.http || resp.GetStatus().GetMessage() != tc.want.reason {
					t.Fatalf("answered %d %q, want %d %q", got, resp.GetStatus().GetMessage(), tc.want.http, tc.want.reason)
				}
				up, forwarded := attackResEnvoyApply(tc.headers, resp)
				if forwarded != (tc.want.upstream != nil) {
					t.Fatalf("forwarded = %v, want %v", forwarded, tc.want.upstream != nil)
				}
				got := map[string][]string{}
				for _, hd := range up {
					if slices.Contains(attackResIdentityNames, hd.name) || hd.name == "x-api-key" {
						got[hd.name] = append(got[hd.name], hd.value)
					}
					if strings.Contains(hd.value, "forged") {
						t.Errorf("forged value reaches the upstream: %s: %s", hd.name, hd.value)
					}
				}
				if forwarded && !maps.EqualFunc(got, tc.want.upstream, slices.Equal) {
					t.Errorf("upstream identity = %v, want %v", got, tc.want.upstream)
				}
				// A denial's headers go to the client: none may carry identity.
				for _, hd := range resp.GetDeniedResponse().GetHeaders() {
					if slices.Contains(attackResIdentityNames, strings.ToLower(hd.GetHeader().GetKey())) {
						t.Errorf("denial carries %s", hd.GetHeader().GetKey())
					}
				}
			})
		}
	}
	attackResNoPanic(t, h)
}
