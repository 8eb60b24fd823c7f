package authz_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/tokens"
)

// forwarded is the request the upstream receives once the gateway applied
// an allowed decision as Envoy does: headers set (replacing), then headers
// removed, by exact lower-case name.
func forwarded(r map[string]string, d authz.Decision) map[string]string {
	out := maps.Clone(r)
	for _, h := range d.UpstreamHeaders {
		out[h.Name] = h.Value
	}
	for _, n := range d.RemoveHeaders {
		delete(out, n)
	}
	return out
}

// cgiView is what a CGI-style upstream (PHP, WSGI, Rack) reads: names
// with '_' read as '-', case folded. Two spellings of one name make it
// ambiguous, reported as such.
func cgiView(h map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		key := strings.ReplaceAll(strings.ToLower(k), "_", "-")
		if _, dup := out[key]; dup {
			v = "<ambiguous>"
		}
		out[key] = v
	}
	return out
}

func stripPipeline(t testing.TB, mode string) *authz.Pipeline {
	t.Helper()
	cfg := authz.Config{
		StripCredentials: mode,
		Rules: []authz.RuleConfig{
			{Name: "public", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/public/"}}, Action: authz.ActionAllow},
			{Name: "api", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/api/"}}, Action: authz.ActionAuthenticate,
				Authenticators: []string{"keys", "bearer", "cookie", "sid2", "keys2", "rawauth"}},
			{Name: "svc", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/svc/"}}, Action: authz.ActionAuthenticate,
				Authenticators: []string{"peer", "cookie", "bearer", "keys"}},
		},
	}
	auths := []*authz.Authenticator{
		{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, StripCredential: true, Verifier: authztest.Credentials{"k-alice": alice}},
		{Name: "bearer", Source: authz.CredentialSource{Authorization: "Bearer"}, Verifier: authztest.Credentials{"t-bob": bob}},
		{Name: "cookie", Source: authz.CredentialSource{Cookie: "session"}, StripCredential: true, Verifier: authztest.Credentials{"s-bob": bob}},
		{Name: "sid2", Source: authz.CredentialSource{Cookie: "sid2"}, Verifier: authztest.Credentials{"s2-bob": bob}},
		// Same header as keys, not stripped: when it accepts, the
		// header is its credential and stays.
		{Name: "keys2", Source: authz.CredentialSource{Header: "X-Api-Key"}, Verifier: authztest.Credentials{"k2-root": root}},
		// The whole Authorization header as a bare credential.
		{Name: "rawauth", Source: authz.CredentialSource{Header: "Authorization"}, Verifier: authztest.Credentials{"raw-root": root}},
		// The gateway's TLS peer (mtls kind): in no header.
		{Name: "peer", Source: authz.CredentialSource{Peer: true}, Verifier: authz.VerifierFunc(func(_ context.Context, cred string) (tokens.Principal, error) {
			if cred == "" {
				return tokens.Principal{}, tokens.ErrMalformed
			}
			return tokens.Principal{Subject: "svc", Method: "mtls"}, nil
		})},
	}
	p, err := authz.NewPipeline(cfg, auths, authz.Options{NewID: authztest.SequentialIDs()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStripUnverifiedCredentials: a credential the rule configures but no
// authenticator verified never reaches the upstream next to the one that
// was verified, in any place or spelling.
func TestStripUnverifiedCredentials(t *testing.T) {
	tests := []struct {
		name    string
		mode    string
		path    string
		peer    string // the CheckRequest's source principal
		give    []string
		want    map[string]string // upstream (CGI view) must hold these
		wantOut []string          // and not these
	}{
		{name: "forged bearer beside a valid api key", path: "/api/x",
			give:    []string{"x-api-key", "k-alice", "authorization", "Bearer forged.jwt.token"},
			want:    map[string]string{"x-auth-subject": "alice"},
			wantOut: []string{"authorization", "x-api-key"}},
		{name: "another scheme in authorization is no more verified", path: "/api/x",
			give:    []string{"x-api-key", "k-alice", "authorization", "Basic YWRtaW46YWRtaW4="},
			wantOut: []string{"authorization"}},
		{name: "bogus api key beside a valid bearer (kept: no strip)", path: "/api/x",
			give:    []string{"authorization", "Bearer t-bob", "x-api-key", "k-forged"},
			want:    map[string]string{"authorization": "Bearer t-bob", "x-auth-subject": "bob"},
			wantOut: []string{"x-api-key"}},
		{name: "api key in another spelling beside a valid bearer", path: "/api/x",
			give:    []string{"authorization", "Bearer t-bob", "X_Api_Key", "k-forged", "x_api-key", "k-forged"},
			want:    map[string]string{"x-auth-subject": "bob"},
			wantOut: []string{"x-api-key"}},
		{name: "unverified session cookie beside a valid bearer; app cookie kept", path: "/api/x",
			give: []string{"authorization", "Bearer t-bob", "cookie", "theme=dark; session=forged; sid2=forged"},
			want: map[string]string{"cookie": "theme=dark"}},
		{name: "winner cookie stripped with the loser's", path: "/api/x",
			give: []string{"cookie", "session=s-bob; sid2=forged; theme=dark"},
			want: map[string]string{"cookie": "theme=dark", "x-auth-subject": "bob"}},
		{name: "loser cookies only: cookie header removed", path: "/api/x",
			give:    []string{"x-api-key", "k-alice", "cookie", "session=forged; sid2=x"},
			wantOut: []string{"cookie"}},
		{name: "winner keeps its own cookie (no strip), loser's removed", path: "/api/x",
			give: []string{"cookie", "sid2=s2-bob; session=forged"},
			want: map[string]string{"cookie": "sid2=s2-bob", "x-auth-subject": "bob"}},
		{name: "shared header is the winner's: kept when it does not strip", path: "/api/x",
			give: []string{"x-api-key", "k2-root", "authorization", "Bearer forged"},
			want: map[string]string{"x-api-key": "k2-root", "x-auth-subject": "root"}, wantOut: []string{"authorization"}},
		{name: "a bare authorization header source is the bearer winner's header: kept", path: "/api/x",
			give: []string{"authorization", "Bearer t-bob", "x-api-key", "k-forged"},
			want: map[string]string{"authorization": "Bearer t-bob", "x-auth-subject": "bob"}, wantOut: []string{"x-api-key"}},
		{name: "the bare authorization winner keeps its header; bearer loser does not strip it", path: "/api/x",
			give: []string{"authorization", "raw-root"},
			want: map[string]string{"authorization": "raw-root", "x-auth-subject": "root"}},
		{name: "mTLS peer winner: every header and cookie credential of the rule is unverified", path: "/svc/x", peer: "spiffe://example.org/ns/a/sa/b",
			give:    []string{"cookie", "session=forged; theme=dark", "authorization", "Bearer forged", "x-api-key", "k"},
			want:    map[string]string{"cookie": "theme=dark", "x-auth-subject": "svc"},
			wantOut: []string{"authorization", "x-api-key"}},
		{name: "verified mode: the old behaviour forwards the forged bearer", mode: authz.StripCredentialsVerified, path: "/api/x",
			give: []string{"x-api-key", "k-alice", "authorization", "Bearer forged"},
			want: map[string]string{"authorization": "Bearer forged"}, wantOut: []string{"x-api-key"}},
		{name: "allow rule, default mode: credentials are the app's", path: "/public/x",
			give: []string{"authorization", "Bearer whatever", "cookie", "session=abc; theme=dark", "x-api-key", "k"},
			want: map[string]string{"authorization": "Bearer whatever", "cookie": "session=abc; theme=dark", "x-api-key": "k"}},
		{name: "allow rule, mode all: every configured source stripped", mode: authz.StripCredentialsAll, path: "/public/x",
			give:    []string{"authorization", "Bearer whatever", "cookie", "session=abc; theme=dark", "X_API_KEY", "k"},
			want:    map[string]string{"cookie": "theme=dark"},
			wantOut: []string{"authorization", "x-api-key"}},
		{name: "mode all, authenticate rule: as rule", mode: authz.StripCredentialsAll, path: "/api/x",
			give:    []string{"x-api-key", "k-alice", "authorization", "Bearer forged"},
			wantOut: []string{"authorization", "x-api-key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := stripPipeline(t, tt.mode)
			r := req("GET", "api.example.com", tt.path, tt.give...)
			r.SourcePrincipal = tt.peer
			sent := maps.Clone(r.Headers)
			d := p.Decide(context.Background(), r)
			if !d.Allowed() {
				t.Fatalf("denied: %s", d.Reason)
			}
			up := cgiView(forwarded(sent, d))
			for k, v := range tt.want {
				if up[k] != v {
					t.Errorf("upstream %s = %q, want %q (decision set %v remove %v)", k, up[k], v, d.UpstreamHeaders, d.RemoveHeaders)
				}
			}
			for _, k := range tt.wantOut {
				if v, ok := up[k]; ok {
					t.Errorf("upstream still gets %s = %q (remove %v)", k, v, d.RemoveHeaders)
				}
			}
			for _, h := range d.UpstreamHeaders {
				if slices.Contains(d.RemoveHeaders, h.Name) {
					t.Errorf("%s both set and removed: Envoy removes after setting", h.Name)
				}
			}
		})
	}
}

func TestStripCredentialsValidated(t *testing.T) {
	cfg := authz.Config{StripCredentials: "some", Rules: []authz.RuleConfig{{Name: "a", Action: authz.ActionAllow}}}
	err := cfg.Validate(func(string) bool { return true })
	if err == nil || !strings.Contains(err.Error(), "strip_credentials") {
		t.Fatalf("err = %v", err)
	}
}

// TestStripNothingCarriedAllocatesNothingExtra: the common request carries
// only the winning credential; stripping others costs no allocation.
func TestStripNothingCarriedAllocatesNothingExtra(t *testing.T) {
	on, off := stripPipeline(t, authz.StripCredentialsRule), stripPipeline(t, authz.StripCredentialsVerified)
	measure := func(p *authz.Pipeline) float64 {
		return testing.AllocsPerRun(200, func() {
			r := req("GET", "api.example.com", "/api/x", "authorization", "Bearer t-bob")
			r.PlainHeaderNames = true
			if d := p.Decide(context.Background(), r); !d.Allowed() {
				t.Fatal(d.Reason)
			}
		})
	}
	if a, b := measure(on), measure(off); a != b {
		t.Errorf("strip mode rule allocates %v per decision, verified %v", a, b)
	}
}

// FuzzStripUnverified: whatever cookies and headers a request carries, an
// allowed request never reaches the upstream with a credential at a source
// of the rule other than the verified one: no cookie of a losing cookie
// authenticator, no Authorization when it did not win, no spelling of
// x-api-key when keys did not win, and never a header both set and
// removed.
func FuzzStripUnverified(f *testing.F) {
	f.Add("session=s-bob; sid2=x; theme=dark", "Bearer forged", "X_Api_Key", "k", 0)
	f.Add(" session = s-bob ;;sid2=", "Basic x", "x-api-key", "k-alice", 1)
	f.Add("sid2=s2-bob; session=\"q\"", "", "x-api_key", "", 2)
	f.Add("session=a; session=b", "raw-root", "", "", 2)
	p := stripPipeline(f, authz.StripCredentialsRule)
	f.Fuzz(func(t *testing.T, cookie, authorization, keyName, key string, winner int) {
		h := map[string]string{}
		switch winner % 3 {
		case 0:
			h["authorization"] = "Bearer t-bob"
		case 1:
			h["x-api-key"] = "k-alice"
		default:
			cookie = "session=s-bob; " + cookie
		}
		if cookie != "" {
			h["cookie"] = cookie
		}
		if authorization != "" && h["authorization"] == "" {
			h["authorization"] = authorization
		}
		if keyName != "" && strings.EqualFold(strings.ReplaceAll(keyName, "_", "-"), "x-api-key") && h[keyName] == "" {
			h[keyName] = key
		}
		r := &authz.Request{Method: "GET", Host: "api.example.com", Path: "/api/x", Headers: maps.Clone(h)}
		d := p.Decide(context.Background(), r)
		if !d.Allowed() {
			return // a malformed mix (duplicate cookie, two spellings) is refused: nothing goes upstream
		}
		up := forwarded(h, d)
		win := d.Identity.Authenticator
		for name := range up {
			if win != "keys" && win != "keys2" && strings.ReplaceAll(strings.ToLower(name), "_", "-") == "x-api-key" {
				t.Errorf("%s reaches the upstream, %s won", name, win)
			}
		}
		if _, ok := up["authorization"]; ok && win != "bearer" && win != "rawauth" {
			t.Errorf("authorization reaches the upstream, %s won", win)
		}
		for _, part := range strings.Split(up["cookie"], ";") {
			k, _, _ := strings.Cut(part, "=")
			k = strings.TrimSpace(k)
			if (k == "session" && win != "cookie") || (k == "sid2" && win != "sid2") || (k == "session" && win == "cookie") {
				t.Errorf("cookie %s reaches the upstream, %s won (cookie %q)", k, win, up["cookie"])
			}
		}
		for _, s := range d.UpstreamHeaders {
			if slices.Contains(d.RemoveHeaders, s.Name) {
				t.Errorf("%s both set and removed", s.Name)
			}
		}
	})
}
