package authz_test

import (
	"context"
	"maps"
	"strings"
	"testing"
)

// TestStripLoserCookieSpellings: an unverified cookie credential is
// removed in every spelling a common upstream reads as that cookie: names
// differing in case (ASP.NET Core's cookie collection ignores case),
// percent-encoded names (Rack and PHP decode them), and pairs after a ','
// (Rack splits cookies on ',' as well as ';'). Other cookies stay as sent.
func TestStripLoserCookieSpellings(t *testing.T) {
	tests := []struct {
		name, give, want string
	}{
		{"upper case", "SESSION=forged; theme=dark", "theme=dark"},
		{"mixed case, spaces", "theme=dark;  Session =forged", "theme=dark"},
		{"percent-encoded name", "sess%69on=forged; theme=dark", "theme=dark"},
		{"percent-encoded upper", "theme=dark; %53ID2=forged", "theme=dark"},
		{"after a comma", "theme=dark, session=forged", "theme=dark"},
		{"comma inside a pair, both losers", "sid2=x,SESSION=y; theme=dark", "theme=dark"},
		{"commas in an app value kept", "prefs=a,b; session=forged", "prefs=a,b"},
		{"similar names kept", "sessions=1; session=forged; xsession=2", "sessions=1; xsession=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := stripPipeline(t, "")
			r := req("GET", "api.example.com", "/api/x", "authorization", "Bearer t-bob", "cookie", tt.give)
			sent := maps.Clone(r.Headers)
			d := p.Decide(context.Background(), r)
			if !d.Allowed() {
				t.Fatalf("denied: %s", d.Reason)
			}
			up := cgiView(forwarded(sent, d))
			if up["cookie"] != tt.want {
				t.Errorf("upstream cookie %q, want %q", up["cookie"], tt.want)
			}
			if strings.Contains(strings.ToLower(up["cookie"]), "forged") {
				t.Errorf("the unverified cookie reaches the upstream: %q", up["cookie"])
			}
		})
	}
	// The winner's own cookie, stripped (strip_credential), goes in every
	// spelling too: a second copy beside it is no more verified.
	for _, give := range []string{"session=s-bob; SESSION=forged; theme=dark", "session=s-bob; theme=dark, sess%69on=forged"} {
		p := stripPipeline(t, "")
		r := req("GET", "api.example.com", "/api/x", "cookie", give)
		sent := maps.Clone(r.Headers)
		d := p.Decide(context.Background(), r)
		if !d.Allowed() {
			t.Fatalf("%q: denied: %s", give, d.Reason)
		}
		if up := cgiView(forwarded(sent, d)); up["cookie"] != "theme=dark" || up["x-auth-subject"] != "bob" {
			t.Errorf("%q: upstream cookie %q, subject %q; want theme=dark, bob", give, up["cookie"], up["x-auth-subject"])
		}
	}
	// Nothing to strip: the header is not rewritten.
	p := stripPipeline(t, "")
	r := req("GET", "api.example.com", "/api/x", "authorization", "Bearer t-bob", "cookie", "theme=dark,  x=1;y=2")
	d := p.Decide(context.Background(), r)
	for _, h := range d.UpstreamHeaders {
		if h.Name == "cookie" {
			t.Errorf("cookie rewritten to %q with no loser cookie in it", h.Value)
		}
	}
}
