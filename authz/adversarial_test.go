package authz_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/tokens"
)

// adversarialPolicy protects /admin and /admin/ and has a broad anonymous
// allow behind them: every evasion lands on "public".
func adversarialPolicy(methodOverride string) authz.Config {
	return authz.Config{
		MethodOverride: methodOverride,
		IdentityHeaders: authz.IdentityHeaders{
			Claims:     map[string]string{"groups": "x-auth-groups"},
			AlsoRemove: []string{"x-legacy-user"},
		},
		Rules: []authz.RuleConfig{
			{Name: "deny-delete", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/"}, Methods: []string{"DELETE"}}, Action: authz.ActionDeny},
			{Name: "admin-exact", Match: authz.MatchConfig{Hosts: []string{"api.example.com", "*.example.org", "[::1]"}, Path: authz.PathMatch{Exact: "/admin"}},
				Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}},
			{Name: "admin", Match: authz.MatchConfig{Hosts: []string{"api.example.com", "*.example.org", "[::1]"}, Path: authz.PathMatch{Prefix: "/admin/"}},
				Action: authz.ActionAuthenticate, Authenticators: []string{"keys"}},
			{Name: "login", Match: authz.MatchConfig{Path: authz.PathMatch{Exact: "/login"}}, Action: authz.ActionDeny},
			{Name: "public", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/"}}, Action: authz.ActionAllow},
		},
	}
}

func adversarialPipeline(t testing.TB, methodOverride string, principals authztest.Credentials) *authz.Pipeline {
	t.Helper()
	if principals == nil {
		principals = authztest.Credentials{"k-alice": alice}
	}
	auths := []*authz.Authenticator{{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, Verifier: principals}}
	p, err := authz.NewPipeline(adversarialPolicy(methodOverride), auths, authz.Options{NewID: authztest.SequentialIDs()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Every spelling of a protected request is judged as the protected
// request, or refused; none reaches the anonymous "public" rule.
func TestAdversarialRequests(t *testing.T) {
	p := adversarialPipeline(t, "", nil)
	tests := []struct {
		name       string
		give       *authz.Request
		wantCode   authz.Code
		wantReason string
		wantRule   string
	}{
		// Paths (the canonicaliser's classes, seen through Decide).
		{"encoded unreserved", req("GET", "api.example.com", "/%61dmin"), authz.Unauthenticated, "missing_credential", "admin-exact"},
		{"encoded unreserved in prefix", req("GET", "api.example.com", "/%61%64%6d%69%6e/users"), authz.Unauthenticated, "missing_credential", "admin"},
		{"trailing dot-dot keeps the slash", req("GET", "api.example.com", "/admin/x/.."), authz.Unauthenticated, "missing_credential", "admin"},
		{"trailing dot keeps the slash", req("GET", "api.example.com", "/admin/."), authz.Unauthenticated, "missing_credential", "admin"},
		{"encoded dots", req("GET", "api.example.com", "/public/%2e%2e/admin/"), authz.Unauthenticated, "missing_credential", "admin"},
		{"merged slashes", req("GET", "api.example.com", "//admin//x"), authz.Unauthenticated, "missing_credential", "admin"},
		{"overlong slash", req("GET", "api.example.com", "/public/..%c0%afadmin/"), authz.BadRequest, "invalid_path", ""},
		{"encoded slash", req("GET", "api.example.com", "/public/..%2fadmin/"), authz.BadRequest, "invalid_path", ""},
		{"backslash", req("GET", "api.example.com", `/public\..\admin/`), authz.BadRequest, "ambiguous_path", ""},
		{"fragment", req("GET", "api.example.com", "/public#/../admin/"), authz.BadRequest, "ambiguous_path", ""},
		{"double encoding", req("GET", "api.example.com", "/%2561dmin/"), authz.BadRequest, "ambiguous_path", ""},
		{"absolute-form target", req("GET", "api.example.com", "http://api.example.com/admin/"), authz.BadRequest, "invalid_path", ""},
		{"tomcat dot-dot-semicolon", req("GET", "api.example.com", "/public/..;/admin/"), authz.BadRequest, "ambiguous_path", ""},
		// Path parameters: a servlet container serves /admin for
		// /admin;x, an exact rule does not match "/admin;x": refused.
		{"parameter hides an exact rule", req("GET", "api.example.com", "/admin;jsessionid=1"), authz.BadRequest, "ambiguous_path", ""},
		{"parameter on the deny rule", req("GET", "h", "/login;x=1"), authz.BadRequest, "ambiguous_path", ""},
		{"parameter on the protected segment", req("GET", "api.example.com", "/admin;x/users"), authz.BadRequest, "ambiguous_path", ""},
		{"parameter that changes nothing", req("GET", "api.example.com", "/admin/users;x"), authz.Unauthenticated, "missing_credential", "admin"},
		{"parameter on a public path", req("GET", "h", "/shop;jsessionid=1/cart"), authz.OK, "", "public"},
		// Letter case: Express (by default), ASP.NET Core and IIS route
		// case-insensitively, so a spelling that a case-folding router
		// serves from a protected route is refused, not judged public.
		{"upper-case protected prefix", req("GET", "api.example.com", "/ADMIN/users"), authz.BadRequest, "ambiguous_path", ""},
		{"mixed-case exact rule", req("GET", "api.example.com", "/Admin"), authz.BadRequest, "ambiguous_path", ""},
		{"case and parameters together", req("GET", "api.example.com", "/ADMIN;x/"), authz.BadRequest, "ambiguous_path", ""},
		{"encoded upper case", req("GET", "api.example.com", "/%41dmin/"), authz.BadRequest, "ambiguous_path", ""},
		{"dotless i upper-cases to I", req("GET", "api.example.com", "/adm\u0131n/"), authz.BadRequest, "ambiguous_path", ""},
		{"long s upper-cases to S", req("GET", "h", "/login\u017f"), authz.OK, "", "public"},
		{"kelvin sign lower-cases to k", req("GET", "api.example.com", "/admin/\u212a"), authz.Unauthenticated, "missing_credential", "admin"},
		{"case inside one rule", req("GET", "api.example.com", "/admin/Users/ABC"), authz.Unauthenticated, "missing_credential", "admin"},
		{"case on a public path", req("GET", "h", "/Shop/Cart"), authz.OK, "", "public"},
		{"case on the deny rule", req("GET", "h", "/LOGIN"), authz.BadRequest, "ambiguous_path", ""},

		// Hosts.
		{"host case", req("GET", "API.EXAMPLE.COM", "/admin"), authz.Unauthenticated, "missing_credential", "admin-exact"},
		{"host port", req("GET", "api.example.com:8443", "/admin"), authz.Unauthenticated, "missing_credential", "admin-exact"},
		{"host trailing dot", req("GET", "api.example.com.", "/admin"), authz.Unauthenticated, "missing_credential", "admin-exact"},
		{"host trailing dot and port", req("GET", "api.example.com.:443", "/admin"), authz.Unauthenticated, "missing_credential", "admin-exact"},
		{"wildcard trailing dot", req("GET", "a.example.org.", "/admin"), authz.Unauthenticated, "missing_credential", "admin-exact"},
		{"ipv6 literal", req("GET", "[0:0::1]:8443", "/admin"), authz.Unauthenticated, "missing_credential", "admin-exact"},
		{"kelvin sign is not k", req("GET", "api.example.com\u212a", "/admin"), authz.BadRequest, "invalid_host", ""},
		{"non-ASCII host", req("GET", "b\u00fccher.example.org", "/admin"), authz.BadRequest, "invalid_host", ""},
		{"punycode host", req("GET", "xn--bcher-kva.example.org", "/admin"), authz.Unauthenticated, "missing_credential", "admin-exact"},
		{"two trailing dots", req("GET", "api.example.com..", "/admin"), authz.BadRequest, "invalid_host", ""},
		{"empty label", req("GET", "api..example.com", "/admin"), authz.BadRequest, "invalid_host", ""},
		{"empty host", req("GET", "", "/admin"), authz.BadRequest, "invalid_host", ""},
		{"userinfo", req("GET", "evil@api.example.com", "/admin"), authz.BadRequest, "invalid_host", ""},
		{"non-numeric port", req("GET", "api.example.com:x", "/admin"), authz.BadRequest, "invalid_host", ""},
		{"port out of range", req("GET", "api.example.com:65536", "/admin"), authz.BadRequest, "invalid_host", ""},
		{"unbracketed ipv6", req("GET", "::1", "/admin"), authz.BadRequest, "invalid_host", ""},
		{"ipv6 zone", req("GET", "[fe80::1%25eth0]", "/admin"), authz.BadRequest, "invalid_host", ""},
		{"percent in host", req("GET", "api%2eexample.com", "/admin"), authz.BadRequest, "invalid_host", ""},

		// Methods.
		{"lower-case method", req("delete", "h", "/x"), authz.Forbidden, "denied_by_rule", "deny-delete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(context.Background(), tt.give)
			if d.Code != tt.wantCode || d.Reason != tt.wantReason || d.Rule != tt.wantRule {
				t.Fatalf("Decide = %v %q rule %q; want %v %q rule %q", d.Code, d.Reason, d.Rule, tt.wantCode, tt.wantReason, tt.wantRule)
			}
		})
	}
}

func TestCanonicalHost(t *testing.T) {
	tests := []struct {
		give, want string
		wantErr    bool
	}{
		{give: "Example.COM", want: "example.com"},
		{give: "example.com.", want: "example.com"},
		{give: "example.com:", want: "example.com"},
		{give: "example.com:443", want: "example.com"},
		{give: "my_host.internal", want: "my_host.internal"},
		{give: "10.0.0.1:80", want: "10.0.0.1"},
		{give: "[2001:DB8::1]", want: "[2001:db8::1]"},
		{give: "[2001:db8:0:0:0:0:0:1]:443", want: "[2001:db8::1]"},
		{give: "XN--BCHER-KVA.example", want: "xn--bcher-kva.example"},
		{give: "", wantErr: true},
		{give: ".", wantErr: true},
		{give: ":443", wantErr: true},
		{give: ".example.com", wantErr: true},
		{give: "a.b..", wantErr: true},
		{give: "exa mple.com", wantErr: true},
		{give: "example.com\x00", wantErr: true},
		{give: "\u212aelvin.example", wantErr: true},
		{give: "b\u00fccher.example", wantErr: true},
		{give: "example.com\xff", wantErr: true},
		{give: "a/b", wantErr: true},
		{give: "a\\b", wantErr: true},
		{give: "a:1:2", wantErr: true},
		{give: "[::1", wantErr: true},
		{give: "[::1]x", wantErr: true},
		{give: "[1.2.3.4]", wantErr: true},
		{give: "[::1]:123456", wantErr: true},
		// A last label that is a number makes the host an IPv4 address to
		// WHATWG URL parsers and inet_aton, in forms rules never name.
		{give: "127.0.0.1.", want: "127.0.0.1"},
		{give: "1.2.3.4:8080", want: "1.2.3.4"},
		{give: "1e100.net", want: "1e100.net"},
		{give: "a.0x", wantErr: true},
		{give: "0x7f.1", wantErr: true},
		{give: "0X7F.0.0.1", wantErr: true},
		{give: "127.1", wantErr: true},
		{give: "2130706433", wantErr: true},
		{give: "0177.0.0.1", wantErr: true},
		{give: "010.0.0.1:80", wantErr: true},
		{give: "1.2.3.4.5", wantErr: true},
		{give: "256.0.0.1", wantErr: true},
		{give: "example.123", wantErr: true},
		{give: "api.example.com.0x10", wantErr: true},
		// IPv4-mapped IPv6 stays IPv6: rules name it as such.
		{give: "[::FFFF:7f00:1]", want: "[::ffff:127.0.0.1]"},
	}
	for _, tt := range tests {
		got, err := authz.CanonicalHost(tt.give)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("CanonicalHost(%q) = %q, %v; want %q, error %v", tt.give, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, authz.ErrInvalidHost) {
			t.Errorf("CanonicalHost(%q): error %v is not ErrInvalidHost", tt.give, err)
		}
	}
}

func FuzzCanonicalHost(f *testing.F) {
	for _, s := range []string{"Example.COM:443", "[::1]:80", "a.b.", "\u212a", "xn--x", "a..b", "[fe80::1%25x]",
		"0x7f.1", "127.1", "2130706433", "1.2.3.4.", "0177.0.0.1", "a.0x", "1.2.3.4.5", "1e100.net"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, authority string) {
		h, err := authz.CanonicalHost(authority)
		if err != nil {
			return
		}
		if h == "" || strings.ToLower(h) != h || strings.HasSuffix(h, ".") {
			t.Fatalf("CanonicalHost(%q) = %q: not canonical", authority, h)
		}
		for i := 0; i < len(h); i++ {
			if h[i] >= 0x80 || h[i] <= ' ' {
				t.Fatalf("CanonicalHost(%q) = %q: non-ASCII or control byte", authority, h)
			}
		}
		if again, err := authz.CanonicalHost(h); err != nil || again != h {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", authority, h, again, err)
		}
		if ip, isIP := whatwgIPv4(h); isIP && ip != h {
			t.Fatalf("CanonicalHost(%q) = %q, which a WHATWG URL parser reads as %q", authority, h, ip)
		}
	})
}

// whatwgIPv4 is the WHATWG URL standard's IPv4 parser (host parsing, steps
// "ends in a number" and "IPv4 parser"), written from the standard as an
// oracle: isIP reports that the host is an IPv4 address to such a parser;
// ip is its serialisation ("" when the parser fails: a URL error).
func whatwgIPv4(host string) (ip string, isIP bool) {
	parts := strings.Split(host, ".")
	if parts[len(parts)-1] == "" && len(parts) > 1 {
		parts = parts[:len(parts)-1]
	}
	last := parts[len(parts)-1]
	if last == "" {
		return "", false
	}
	if strings.Trim(last, "0123456789") != "" {
		if !(len(last) >= 2 && (last[:2] == "0x" || last[:2] == "0X") && strings.Trim(last[2:], "0123456789abcdefABCDEF") == "") {
			return "", false
		}
	}
	if len(parts) > 4 {
		return "", true
	}
	nums := make([]uint64, 0, 4)
	for _, p := range parts {
		base := 10
		switch {
		case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
			p, base = p[2:], 16
		case len(p) >= 2 && p[0] == '0':
			p, base = p[1:], 8
		}
		if p == "" {
			nums = append(nums, 0)
			continue
		}
		n, err := strconv.ParseUint(p, base, 64)
		if err != nil {
			return "", true
		}
		nums = append(nums, n)
	}
	for _, n := range nums[:len(nums)-1] {
		if n > 255 {
			return "", true
		}
	}
	if nums[len(nums)-1] >= 1<<(8*(5-len(nums))) {
		return "", true
	}
	v := nums[len(nums)-1]
	for i, n := range nums[:len(nums)-1] {
		v += n << (8 * (3 - i))
	}
	return fmt.Sprintf("%d.%d.%d.%d", v>>24, v>>16&0xff, v>>8&0xff, v&0xff), true
}

// Identity headers in every spelling an upstream may map to them are
// removed, on allow rules too.
func TestIdentityHeaderSpellingsRemoved(t *testing.T) {
	p := adversarialPipeline(t, "", nil)
	forged := []string{"x_auth_subject", "X_Auth-Subject", "x-auth_subject", "X-AUTH-SUBJECT", "x_legacy_user", "x_auth_groups"}
	headers := []string{"x-api-key", "k-alice"}
	for _, h := range forged {
		headers = append(headers, h, "root")
	}
	for _, tt := range []struct {
		name string
		path string
	}{{"authenticated", "/admin/x"}, {"anonymous allow", "/public"}} {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(context.Background(), req("GET", "api.example.com", tt.path, headers...))
			if !d.Allowed() {
				t.Fatalf("denied: %v %s", d.Code, d.Reason)
			}
			for _, h := range forged {
				if !slices.Contains(d.RemoveHeaders, h) {
					t.Errorf("%s not removed; RemoveHeaders = %q", h, d.RemoveHeaders)
				}
			}
			for _, s := range d.UpstreamHeaders {
				if slices.Contains(d.RemoveHeaders, s.Name) {
					t.Errorf("%s both set and removed", s.Name)
				}
			}
		})
	}
	t.Run("stripped credential in every spelling", func(t *testing.T) {
		auths := []*authz.Authenticator{{Name: "keys", Source: authz.CredentialSource{Header: "X-Api-Key"}, StripCredential: true,
			Verifier: authztest.Credentials{"k-alice": alice}}}
		p, err := authz.NewPipeline(adversarialPolicy(""), auths, authz.Options{})
		if err != nil {
			t.Fatal(err)
		}
		d := p.Decide(context.Background(), req("GET", "api.example.com", "/admin/x", "x-api-key", "k-alice"))
		if !d.Allowed() {
			t.Fatalf("denied: %v %s", d.Code, d.Reason)
		}
		if !slices.Contains(d.RemoveHeaders, "x-api-key") {
			t.Errorf("x-api-key not removed; RemoveHeaders = %q", d.RemoveHeaders)
		}
		// Other spellings next to it make the credential ambiguous (see
		// TestAmbiguousCredentialRefused): refused, not stripped.
		d = p.Decide(context.Background(), req("GET", "api.example.com", "/admin/x", "x-api-key", "k-alice", "x_api_key", "k-root", "X_API-KEY", "k-root"))
		if d.Code != authz.Unauthenticated || d.Reason != "malformed" {
			t.Fatalf("two spellings: Decide = %v %q, want unauthenticated malformed", d.Code, d.Reason)
		}
	})
	t.Run("unrelated underscore headers are kept", func(t *testing.T) {
		d := p.Decide(context.Background(), req("GET", "h", "/public", "x_request_tag", "1", "x-auth-subjectx", "1"))
		for _, n := range []string{"x_request_tag", "x-auth-subjectx"} {
			if slices.Contains(d.RemoveHeaders, n) {
				t.Errorf("%s removed; RemoveHeaders = %q", n, d.RemoveHeaders)
			}
		}
	})
}

// An identity that cannot reach the upstream exactly as judged is refused:
// an authenticated request never goes upstream without its subject.
func TestIdentityValuesMustBeForwardable(t *testing.T) {
	base := tokens.Principal{Subject: "alice", Issuer: "keys", Method: tokens.MethodAPIKey}
	with := func(f func(*tokens.Principal)) tokens.Principal {
		p := base
		f(&p)
		return p
	}
	tests := []struct {
		name string
		give tokens.Principal
		want authz.Code
	}{
		{"plain", base, authz.OK},
		{"non-ASCII subject", with(func(p *tokens.Principal) { p.Subject = "j\u00fcrgen" }), authz.OK},
		{"list claim", with(func(p *tokens.Principal) { p.Claims = map[string]any{"groups": []any{"a", "b"}} }), authz.OK},
		{"scalar claim with a comma", with(func(p *tokens.Principal) { p.Claims = map[string]any{"groups": "a,b"} }), authz.OK},
		{"empty subject", with(func(p *tokens.Principal) { p.Subject = "" }), authz.Forbidden},
		{"leading space", with(func(p *tokens.Principal) { p.Subject = " admin" }), authz.Forbidden},
		{"trailing space", with(func(p *tokens.Principal) { p.Subject = "admin " }), authz.Forbidden},
		{"line break", with(func(p *tokens.Principal) { p.Subject = "alice\r\nx-auth-subject: root" }), authz.Forbidden},
		{"tab", with(func(p *tokens.Principal) { p.Subject = "al\tice" }), authz.Forbidden},
		{"NUL", with(func(p *tokens.Principal) { p.Subject = "alice\x00" }), authz.Forbidden},
		{"DEL", with(func(p *tokens.Principal) { p.Subject = "alice\x7f" }), authz.Forbidden},
		{"invalid UTF-8", with(func(p *tokens.Principal) { p.Subject = "alice\xff" }), authz.Forbidden},
		{"overlong", with(func(p *tokens.Principal) { p.Subject = strings.Repeat("a", 4097) }), authz.Forbidden},
		{"issuer with a control character", with(func(p *tokens.Principal) { p.Issuer = "keys\n" }), authz.Forbidden},
		// Unicode whitespace at either end: trimmed by an upstream that
		// decodes UTF-8 and strips (Python's str.strip, Java's strip).
		{"trailing no-break space", with(func(p *tokens.Principal) { p.Subject = "admin\u00a0" }), authz.Forbidden},
		{"leading ideographic space", with(func(p *tokens.Principal) { p.Subject = "\u3000admin" }), authz.Forbidden},
		{"trailing em space", with(func(p *tokens.Principal) { p.Subject = "admin\u2003" }), authz.Forbidden},
		{"trailing next line", with(func(p *tokens.Principal) { p.Subject = "admin\u0085" }), authz.Forbidden},
		{"control: inner no-break space", with(func(p *tokens.Principal) { p.Subject = "j\u00a0r" }), authz.OK},
		{"control: non-ASCII at both ends", with(func(p *tokens.Principal) { p.Subject = "\u00e9l\u00e8ve" }), authz.OK},
		// C1 controls and Unicode line separators: line breaks to
		// Python's str.splitlines and JavaScript.
		{"inner next line", with(func(p *tokens.Principal) { p.Subject = "alice\u0085x-auth-subject: root" }), authz.Forbidden},
		{"inner line separator", with(func(p *tokens.Principal) { p.Subject = "alice\u2028root" }), authz.Forbidden},
		{"inner paragraph separator", with(func(p *tokens.Principal) { p.Subject = "alice\u2029root" }), authz.Forbidden},
		{"C1 control CSI", with(func(p *tokens.Principal) { p.Subject = "alice\u009b31m" }), authz.Forbidden},
		{"claim with a line separator", with(func(p *tokens.Principal) { p.Claims = map[string]any{"groups": "a\u2028b"} }), authz.Forbidden},
		{"scope with a space forges a scope", with(func(p *tokens.Principal) { p.Scopes = []string{"read admin"} }), authz.Forbidden},
		{"empty scope", with(func(p *tokens.Principal) { p.Scopes = []string{"read", ""} }), authz.Forbidden},
		// Python's str.split() and Go's strings.Fields split at Unicode
		// spaces too: "read\u00a0admin" would reach them as "read admin".
		{"scope with a no-break space", with(func(p *tokens.Principal) { p.Scopes = []string{"read\u00a0admin"} }), authz.Forbidden},
		{"scope with an em space", with(func(p *tokens.Principal) { p.Scopes = []string{"read\u2003admin"} }), authz.Forbidden},
		{"scope with next line", with(func(p *tokens.Principal) { p.Scopes = []string{"read\u0085admin"} }), authz.Forbidden},
		{"scope with an ideographic space", with(func(p *tokens.Principal) { p.Scopes = []string{"read\u3000admin"} }), authz.Forbidden},
		{"scope with a tab", with(func(p *tokens.Principal) { p.Scopes = []string{"read\tadmin"} }), authz.Forbidden},
		{"non-ASCII scope without spaces", with(func(p *tokens.Principal) { p.Scopes = []string{"lesen:b\u00fccher"} }), authz.OK},
		{"list element with a comma forges an element", with(func(p *tokens.Principal) { p.Claims = map[string]any{"groups": []any{"a,admins"}} }), authz.Forbidden},
		{"claim with a line break", with(func(p *tokens.Principal) { p.Claims = map[string]any{"groups": "a\nb"} }), authz.Forbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := adversarialPipeline(t, "", authztest.Credentials{"k": tt.give})
			d := p.Decide(context.Background(), req("GET", "api.example.com", "/admin/x", "x-api-key", "k"))
			if d.Code != tt.want {
				t.Fatalf("Decide = %v %q, want %v", d.Code, d.Reason, tt.want)
			}
			if d.Code != authz.OK {
				if d.Reason != "invalid_identity" {
					t.Errorf("reason %q, want invalid_identity", d.Reason)
				}
				return
			}
			if !slices.Contains(d.UpstreamHeaders, authz.Header{Name: "x-auth-subject", Value: tt.give.Subject}) {
				t.Errorf("allowed without its subject header: %v", d.UpstreamHeaders)
			}
		})
	}
}

func TestMethodOverride(t *testing.T) {
	tests := []struct {
		mode       string
		give       *authz.Request
		wantCode   authz.Code
		wantReason string
		wantRemove []string
		keep       []string
	}{
		{mode: "", give: req("POST", "h", "/x", "x-http-method-override", "DELETE"), wantCode: authz.OK,
			wantRemove: []string{"x-http-method-override"}},
		{mode: "strip", give: req("POST", "h", "/x", "X_HTTP_Method", "DELETE", "x-method-override", "DELETE", "x_http_method_override", "DELETE"), wantCode: authz.OK,
			wantRemove: []string{"X_HTTP_Method", "x-method-override", "x_http_method_override"}},
		{mode: "strip", give: req("GET", "api.example.com", "/admin/x", "x-api-key", "k-alice", "x-http-method", "DELETE"), wantCode: authz.OK,
			wantRemove: []string{"x-http-method"}},
		{mode: "strip", give: req("POST", "h", "/x", "x-http-method-overrides", "DELETE"), wantCode: authz.OK, keep: []string{"x-http-method-overrides"}},
		{mode: "reject", give: req("POST", "h", "/x", "x-http-method-override", "GET"), wantCode: authz.BadRequest, wantReason: "method_override"},
		{mode: "reject", give: req("POST", "h", "/x", "x_http_method", "GET"), wantCode: authz.BadRequest, wantReason: "method_override"},
		{mode: "reject", give: req("POST", "h", "/x"), wantCode: authz.OK},
		{mode: "match", give: req("POST", "h", "/x", "x-http-method-override", "delete"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "match", give: req("POST", "h", "/x", "x-http-method-override", "PUT"), wantCode: authz.OK, keep: []string{"x-http-method-override"}},
		{mode: "match", give: req("POST", "h", "/x", "x-http-method-override", "PUT, DELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "match", give: req("POST", "h", "/x", "x-http-method-override", "PU T"), wantCode: authz.BadRequest, wantReason: "method_override"},
		{mode: "match", give: req("DELETE", "h", "/x", "x-http-method-override", "DELETE"), wantCode: authz.Forbidden, wantReason: "denied_by_rule"},
		// Target overrides (X-Original-URL, X-Rewrite-URL): Symfony and
		// Zend before their 2018 fixes serve the header's path instead of
		// the one we judged ("public").
		{mode: "", give: req("GET", "api.example.com", "/public", "x-original-url", "/admin/users"), wantCode: authz.OK,
			wantRemove: []string{"x-original-url"}},
		{mode: "strip", give: req("GET", "api.example.com", "/public", "x-rewrite-url", "/admin/users", "X_Original_URL", "/admin/"), wantCode: authz.OK,
			wantRemove: []string{"x-rewrite-url", "X_Original_URL"}},
		{mode: "strip", give: req("GET", "api.example.com", "/admin/x", "x-api-key", "k-alice", "x_rewrite_url", "/admin/y", "x-http-method", "DELETE"), wantCode: authz.OK,
			wantRemove: []string{"x_rewrite_url", "x-http-method"}},
		{mode: "strip", give: req("GET", "h", "/x", "x-original-urls", "/admin/"), wantCode: authz.OK, keep: []string{"x-original-urls"}},
		{mode: "match", give: req("GET", "api.example.com", "/public", "x-original-url", "/admin/users"), wantCode: authz.OK,
			wantRemove: []string{"x-original-url"}},
		{mode: "match", give: req("POST", "h", "/x", "x-http-method-override", "PUT", "x-rewrite-url", "/admin/"), wantCode: authz.OK,
			wantRemove: []string{"x-rewrite-url"}, keep: []string{"x-http-method-override"}},
		{mode: "reject", give: req("GET", "api.example.com", "/public", "x-original-url", "/admin/users"), wantCode: authz.BadRequest, wantReason: "method_override"},
		// "_method" in the query: Laravel/Symfony and Express's
		// method-override (query getter) serve POST /x?_method=DELETE as
		// a DELETE. It cannot be stripped, so every mode but reject matches
		// rules on it ("deny-delete" vs "public": ambiguous).
		{mode: "", give: req("POST", "h", "/x?_method=DELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "strip", give: req("POST", "h", "/x?a=1&_method=delete&b=2"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "strip", give: req("POST", "h", "/x?a=1;_method=DELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "strip", give: req("POST", "h", "/x?%5Fmethod=DELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "strip", give: req("POST", "h", "/x?_%6D%65thod=%44ELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "strip", give: req("POST", "h", "/x?.method=DELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "strip", give: req("POST", "h", "/x?+_method=DELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "strip", give: req("POST", "h", "/x?_method[]=DELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "strip", give: req("POST", "h", "/x?_method[0]=DELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "strip", give: req("POST", "h", "/x?_method=PUT&_method=DELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "strip", give: req("POST", "h", "/x?_method=DEL%20ETE"), wantCode: authz.BadRequest, wantReason: "method_override"},
		{mode: "strip", give: req("POST", "h", "/x?_method=PUT"), wantCode: authz.OK},
		{mode: "strip", give: req("POST", "h", "/x?_methods=DELETE&method=DELETE&x_method=DELETE&q=_method"), wantCode: authz.OK},
		{mode: "strip", give: req("POST", "h", "/x?_METHOD=DELETE"), wantCode: authz.OK},
		{mode: "match", give: req("POST", "h", "/x?_method=DELETE"), wantCode: authz.BadRequest, wantReason: "ambiguous_method"},
		{mode: "match", give: req("POST", "h", "/x?_method=PUT", "x-http-method-override", "PATCH"), wantCode: authz.OK},
		{mode: "reject", give: req("POST", "h", "/x?_method=PUT"), wantCode: authz.BadRequest, wantReason: "method_override"},
		{mode: "reject", give: req("POST", "h", "/x?method=PUT"), wantCode: authz.OK},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.give.Method+"/"+strings.Join(slices.Sorted(mapKeys(tt.give.Headers)), ",")+"?"+tt.give.Query, func(t *testing.T) {
			d := adversarialPipeline(t, tt.mode, nil).Decide(context.Background(), tt.give)
			if d.Code != tt.wantCode || d.Reason != tt.wantReason {
				t.Fatalf("Decide = %v %q, want %v %q", d.Code, d.Reason, tt.wantCode, tt.wantReason)
			}
			for _, n := range tt.wantRemove {
				if !slices.Contains(d.RemoveHeaders, n) {
					t.Errorf("%s not removed: %q", n, d.RemoveHeaders)
				}
			}
			for _, n := range tt.keep {
				if slices.Contains(d.RemoveHeaders, n) {
					t.Errorf("%s removed: %q", n, d.RemoveHeaders)
				}
			}
		})
	}
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestValidateNormalisation(t *testing.T) {
	tests := []struct {
		name string
		give func(*authz.Config)
		want string
	}{
		{"unknown method_override", func(c *authz.Config) { c.MethodOverride = "ignore" }, `method_override: "ignore" is not one of strip, reject, match`},
		{"identity header with underscore", func(c *authz.Config) { c.IdentityHeaders.Subject = "x_user" }, `identity_headers.subject: "x_user": use '-'`},
		{"non-canonical prefix", func(c *authz.Config) { c.Rules[0].Match.Path.Prefix = "/%61dmin/" }, `rules[0].match.path.prefix: "/%61dmin/" is not in canonical form, which is what rules match: write "/admin/"`},
		{"dot segments in exact", func(c *authz.Config) { c.Rules[0].Match.Path.Exact = "/a/../admin" }, `write "/admin"`},
		{"lower-case escape", func(c *authz.Config) { c.Rules[0].Match.Path.Exact = "/100%3f" }, `write "/100%3F"`},
		{"ambiguous prefix", func(c *authz.Config) { c.Rules[0].Match.Path.Prefix = "/a/..;/" }, `rules[0].match.path.prefix: "/a/..;/": ambiguous_path: requests to it are always refused`},
		{"non-ASCII host", func(c *authz.Config) { c.Rules[0].Match.Hosts = []string{"b\u00fccher.example"} }, "rules[0].match.hosts[0]: \"b\u00fccher.example\" is not a host name"},
		{"kelvin wildcard", func(c *authz.Config) { c.Rules[0].Match.Hosts = []string{"*.\u212a.example"} }, "rules[0].match.hosts[0]: \"*.\u212a.example\": a wildcard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := authz.Config{Rules: []authz.RuleConfig{{Name: "r", Action: "allow"}}}
			tt.give(&c)
			c.ApplyDefaults()
			err := c.Validate(func(string) bool { return true })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
	t.Run("canonical spellings are accepted", func(t *testing.T) {
		c := authz.Config{MethodOverride: "match", Rules: []authz.RuleConfig{{Name: "r", Action: "allow",
			Match: authz.MatchConfig{Hosts: []string{"API.example.com.", "*.xn--bcher-kva.example", "[::1]:443"}, Path: authz.PathMatch{Prefix: "/caf\u00e9/a b;v=1/%3F"}}}}}
		c.ApplyDefaults()
		if err := c.Validate(func(string) bool { return true }); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzIdentityHeaderRemoval: whatever header a client sends, an allowed
// request never carries a client-chosen value under any spelling of an
// identity or method override header: each such header is set by us or
// removed.
func FuzzIdentityHeaderRemoval(f *testing.F) {
	f.Add("x_auth_subject", "root", "/admin/x", true)
	f.Add("X-Auth_Team", "platform", "/public", false)
	f.Add("x-http-method-override", "DELETE", "/public", false)
	f.Add("x_legacy-USER", "root", "/admin/", true)
	f.Add("X-Original-URL", "/admin/", "/public", false)
	f.Add("x_rewrite_url", "/admin/", "/admin/x", true)
	p := adversarialPipeline(f, "", authztest.Credentials{"k": alice})
	protected := map[string]bool{"x-auth-subject": true, "x-auth-issuer": true, "x-auth-method": true, "x-auth-app-id": true,
		"x-auth-scopes": true, "x-auth-groups": true, "x-legacy-user": true, "x-http-method-override": true, "x-http-method": true, "x-method-override": true,
		"x-original-url": true, "x-rewrite-url": true}
	f.Fuzz(func(t *testing.T, name, value, path string, withKey bool) {
		h := map[string]string{strings.ToLower(name): value}
		if withKey {
			h["x-api-key"] = "k"
		}
		d := p.Decide(context.Background(), &authz.Request{Method: "GET", Host: "api.example.com", Path: path, Headers: h})
		if !d.Allowed() {
			return
		}
		for n := range h {
			key := strings.ReplaceAll(strings.ToLower(n), "_", "-")
			if !protected[key] {
				continue
			}
			set := slices.ContainsFunc(d.UpstreamHeaders, func(s authz.Header) bool { return s.Name == n })
			if !set && !slices.Contains(d.RemoveHeaders, n) {
				t.Fatalf("%q (%q) reaches the upstream: set %v, removed %q", n, value, d.UpstreamHeaders, d.RemoveHeaders)
			}
		}
	})
}

// FuzzQueryMethodOverride: whenever an independent reading of the query
// (net/url unescaping, PHP's key mangling) finds a "_method" parameter
// whose value is DELETE, POST /x is not allowed by "public": an upstream
// that honours it would run the DELETE that "deny-delete" refuses.
func FuzzQueryMethodOverride(f *testing.F) {
	for _, q := range []string{"_method=DELETE", "a=1&_method=delete", "%5Fmethod=DELETE", ".method=DELETE", "+_method=DELETE",
		"_method[]=DELETE", "a;_method=DELETE", "_method=%44ELETE", "_methodx=DELETE", "_method", "%zz&_method=DELETE"} {
		f.Add(q)
	}
	p := adversarialPipeline(f, "", nil)
	phpKey := strings.NewReplacer(" ", "_", ".", "_")
	f.Fuzz(func(t *testing.T, query string) {
		deletes := false
		for _, pair := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
			k, v, _ := strings.Cut(pair, "=")
			key, err1 := url.QueryUnescape(k)
			val, err2 := url.QueryUnescape(v)
			if err1 != nil || err2 != nil {
				continue
			}
			if i := strings.IndexByte(key, '['); i >= 0 && strings.IndexByte(key[i:], ']') >= 0 {
				key = key[:i]
			}
			key = phpKey.Replace(strings.TrimLeft(key, " "))
			if key == "_method" && strings.EqualFold(strings.TrimSpace(val), "DELETE") {
				deletes = true
			}
		}
		d := p.Decide(context.Background(), &authz.Request{Method: "POST", Host: "h", Path: "/x", Query: query})
		if deletes && d.Allowed() {
			t.Fatalf("POST /x?%s allowed (rule %q): an upstream reads _method=DELETE", query, d.Rule)
		}
	})
}

// A credential sent twice, or in two spellings, is refused: upstreams
// disagree on which one counts, so the one we verify need not be the one
// the upstream acts on (a revoked session riding along a valid one).
func TestAmbiguousCredentialRefused(t *testing.T) {
	p := newTestPipeline(t)
	tests := []struct {
		name       string
		give       *authz.Request
		wantCode   authz.Code
		wantReason string
	}{
		{"control: one cookie", req("GET", "api.example.com", "/api/x", "cookie", "a=1; session=s-bob; b=2"), authz.OK, ""},
		{"control: a longer name", req("GET", "api.example.com", "/api/x", "cookie", "session=s-bob; sessionx=s-other; xsession=1"), authz.OK, ""},
		{"control: spaces around the name", req("GET", "api.example.com", "/api/x", "cookie", "a=1;  session =s-bob"), authz.OK, ""},
		{"cookie twice", req("GET", "api.example.com", "/api/x", "cookie", "session=s-bob; session=s-revoked"), authz.Unauthenticated, "malformed"},
		{"cookie twice, the same value", req("GET", "api.example.com", "/api/x", "cookie", "session=s-bob; session=s-bob"), authz.Unauthenticated, "malformed"},
		{"cookie twice, one with a space before =", req("GET", "api.example.com", "/api/x", "cookie", "session=s-bob; session =s-revoked"), authz.Unauthenticated, "malformed"},
		{"cookie twice, the second empty", req("GET", "api.example.com", "/api/x", "cookie", "session=s-bob;session="), authz.Unauthenticated, "malformed"},
		{"control: one header", req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice"), authz.OK, ""},
		{"header and its underscore spelling", req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice", "x_api_key", "k-revoked"), authz.Unauthenticated, "malformed"},
		{"header and a mixed spelling", req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice", "X-Api_Key", "k-revoked"), authz.Unauthenticated, "malformed"},
		{"control: a longer header name", req("GET", "api.example.com", "/api/x", "x-api-key", "k-alice", "x_api_keys", "1"), authz.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(context.Background(), tt.give)
			if d.Code != tt.wantCode || d.Reason != tt.wantReason {
				t.Fatalf("Decide = %v %q, want %v %q", d.Code, d.Reason, tt.wantCode, tt.wantReason)
			}
		})
	}
}

// With case_sensitive_paths the operator vouches that every upstream
// routes case-sensitively: a case variant is judged as the path it is.
func TestCaseSensitivePaths(t *testing.T) {
	cfg := adversarialPolicy("")
	cfg.CaseSensitivePaths = true
	auths := []*authz.Authenticator{{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, Verifier: authztest.Credentials{"k-alice": alice}}}
	p, err := authz.NewPipeline(cfg, auths, authz.Options{NewID: authztest.SequentialIDs()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		give     string
		wantCode authz.Code
		wantRule string
	}{
		{give: "/ADMIN/users", wantCode: authz.OK, wantRule: "public"},
		{give: "/admin/users", wantCode: authz.Unauthenticated, wantRule: "admin"},
	} {
		d := p.Decide(context.Background(), req("GET", "api.example.com", tt.give))
		if d.Code != tt.wantCode || d.Rule != tt.wantRule {
			t.Errorf("%s: Decide = %v rule %q; want %v rule %q", tt.give, d.Code, d.Rule, tt.wantCode, tt.wantRule)
		}
	}
}

// BenchmarkDecideCaseFold is what the case-folded reading costs a path
// with upper-case letters (an id, say), against the same pipeline with
// case_sensitive_paths set, in the same run.
func BenchmarkDecideCaseFold(b *testing.B) {
	for _, sensitive := range []bool{false, true} {
		cfg := adversarialPolicy("")
		cfg.CaseSensitivePaths = sensitive
		auths := []*authz.Authenticator{{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, Verifier: authztest.Credentials{}}}
		p, err := authz.NewPipeline(cfg, auths, authz.Options{NewID: func() string { return "id" }})
		if err != nil {
			b.Fatal(err)
		}
		for _, path := range []string{"/shop/orders/abc123", "/shop/Orders/ABC123"} {
			b.Run(fmt.Sprintf("case_sensitive=%v/path=%s", sensitive, path), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					d := p.Decide(context.Background(), req("GET", "h", path))
					if d.Code != authz.OK {
						b.Fatal(d.Reason)
					}
				}
			})
		}
	}
}
