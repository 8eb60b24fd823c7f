package extauthz_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/tokens"
)

// checkEncoding holds AppendCheckResponse to proto.Marshal(Render(...)):
// the same bytes as a deterministic marshal, and the same message when
// read back.
func checkEncoding(t *testing.T, d *authz.Decision, requestID string) {
	t.Helper()
	msg := extauthz.Render(d, requestID)
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		t.Fatalf("proto.Marshal: %v", err)
	}
	prefix := []byte("prefix")
	got := extauthz.AppendCheckResponse(bytes.Clone(prefix), d, requestID)
	if !bytes.HasPrefix(got, prefix) {
		t.Fatal("AppendCheckResponse overwrote dst")
	}
	got = got[len(prefix):]
	if !bytes.Equal(got, want) {
		t.Fatalf("decision %+v:\n got  %x\n want %x", d, got, want)
	}
	back := &authv3.CheckResponse{}
	if err := proto.Unmarshal(got, back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, msg) {
		t.Fatalf("read back %v, want %v", back, msg)
	}
}

// TestAppendCheckResponseGolden: the decisions of every golden request.
func TestAppendCheckResponseGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.golden")
	if len(files) < 5 {
		t.Fatalf("%d golden files", len(files))
	}
	p := testPipeline(t)
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		reqText, _, _ := strings.Cut(string(raw), separator)
		req := &authv3.CheckRequest{}
		if err := protojson.Unmarshal([]byte(stripComments(reqText)), req); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		r := extauthz.RequestFromProto(req)
		d := p.Decide(context.Background(), &r)
		t.Run(filepath.Base(file), func(t *testing.T) { checkEncoding(t, &d, r.RequestID) })
	}
}

// TestAppendCheckResponseCases: edges of the wire form.
func TestAppendCheckResponseCases(t *testing.T) {
	long := strings.Repeat("v", 20000)
	many := make([]authz.Header, 300)
	for i := range many {
		many[i] = authz.Header{Name: "x-h", Value: strings.Repeat("y", i)}
	}
	id := &authz.Identity{Principal: tokens.Principal{Subject: "alice"}, Authenticator: "jwt"}
	cases := []struct {
		name string
		d    authz.Decision
		rid  string
	}{
		{"zero decision", authz.Decision{}, ""},
		{"allow, identity", authz.Decision{ID: "i1", Rule: "api", Identity: id,
			UpstreamHeaders: []authz.Header{{Name: "x-auth-subject", Value: "alice"}, {Name: "x-empty", Value: ""}},
			RemoveHeaders:   []string{"x-auth-subject", "", "x-auth-scopes"}, ResponseHeaders: []authz.Header{{Name: "x-ratelimit-limit", Value: "10"}}}, "rid"},
		{"allow, empty identity", authz.Decision{ID: "i", Identity: &authz.Identity{}}, ""},
		{"allow, subject not UTF-8", authz.Decision{ID: "i", Identity: &authz.Identity{Principal: tokens.Principal{Subject: "a\xffb"}},
			UpstreamHeaders: []authz.Header{{Name: "x-s", Value: "\xc3("}}}, ""},
		{"allow, long values (multi-byte lengths)", authz.Decision{ID: "i", UpstreamHeaders: []authz.Header{{Name: "x-long", Value: long}}}, ""},
		{"allow, many headers", authz.Decision{ID: "i", UpstreamHeaders: many, ResponseHeaders: many}, ""},
		{"deny 401 with challenges", authz.Decision{ID: "d", Code: authz.Unauthenticated, Reason: "missing_credential", Rule: "api",
			Challenges: []string{`Bearer realm="gateway"`, `ApiKey realm="gateway"`}}, "rid-\xff"},
		{"deny 429 with headers", authz.Decision{ID: "d", Code: authz.RateLimited, Reason: "rate_limited", Identity: id,
			ResponseHeaders: []authz.Header{{Name: "retry-after", Value: "1"}}}, strings.Repeat("r", 500)},
		{"deny 429 with plan and effective limit", authz.Decision{ID: "d", Code: authz.RateLimited, Reason: "rate_limited",
			Identity:        &authz.Identity{Principal: tokens.Principal{Subject: "alice"}, Authenticator: "jwt", Plan: "pro"},
			RateLimitPolicy: `"pro/api/second";q=100;w=1`}, ""},
		{"allow with effective limit, anonymous", authz.Decision{ID: "d", RateLimitPolicy: `"gateway/user";q=3;w=60`}, ""},
		{"deny 403", authz.Decision{ID: "d", Code: authz.Forbidden, Reason: "forbidden"}, ""},
		{"deny 400", authz.Decision{ID: "d", Code: authz.BadRequest, Reason: extauthz.ReasonUnreadable}, ""},
		{"deny 503", authz.Decision{ID: "d", Code: authz.Unavailable, Reason: "store_unavailable"}, "<&>"},
		{"unknown code", authz.Decision{ID: "d", Code: authz.Code(42), Reason: "x"}, ""},
		{"negative code", authz.Decision{ID: "d", Code: authz.Code(-1)}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkEncoding(t, &c.d, c.rid) })
	}
}

// TestAppendCheckResponseRandom: 20,000 random decisions.
func TestAppendCheckResponseRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 20))
	words := []string{"", "a", "ok", "x-auth-subject", "alice", "\xff", "é", "Bearer realm=\"g\"", strings.Repeat("z", 130), "a\"b\\c", "<tag>"}
	word := func() string { return words[r.IntN(len(words))] }
	// Names and the pipeline's own words are never from the client; they
	// are valid UTF-8 (proto.Marshal refuses anything else).
	name := func() string { return extauthz.SafeForTest(word()) }
	headers := func() []authz.Header {
		var hs []authz.Header
		for range r.IntN(4) {
			hs = append(hs, authz.Header{Name: name(), Value: word()})
		}
		return hs
	}
	for range 20000 {
		d := authz.Decision{Code: authz.Code(r.IntN(8) - 1), Reason: name(), Rule: name(), ID: name(),
			UpstreamHeaders: headers(), ResponseHeaders: headers()}
		if r.IntN(3) == 0 {
			d.Code = authz.OK
		}
		for range r.IntN(3) {
			d.RemoveHeaders = append(d.RemoveHeaders, name())
			d.Challenges = append(d.Challenges, name())
		}
		if r.IntN(2) == 0 {
			d.Identity = &authz.Identity{Principal: tokens.Principal{Subject: word()}, Authenticator: name(), Plan: name()}
		}
		if r.IntN(2) == 0 {
			d.RateLimitPolicy = name()
		}
		checkEncoding(t, &d, word())
	}
}
