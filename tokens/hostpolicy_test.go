package tokens

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// dialAddr is the address net/http dials for rawURL: the oracle for which
// host a fetch really goes to.
func dialAddr(t *testing.T, rawURL string) string {
	t.Helper()
	var addr string
	stop := errors.New("recorded")
	dial := func(_ context.Context, _, a string) (net.Conn, error) {
		addr = a
		return nil, stop
	}
	c := &http.Client{Transport: &http.Transport{DialContext: dial, DialTLSContext: dial}}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatalf("%s: %v", rawURL, err)
	}
	resp, err := c.Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
	if !errors.Is(err, stop) {
		t.Fatalf("%s: Do = %v, want the recording dialer's error", rawURL, err)
	}
	return addr
}

// TestHostPolicyAgreesWithDial: the host policy allows a URL only when
// net/http dials the home host (or an allowed one) for it. Unicode case
// mapping is not what net/http dials: "İ" lowercases to "i" but IDNA maps
// it to "i̇", so a host that compares equal after strings.ToLower can be
// another registrable domain.
func TestHostPolicyAgreesWithDial(t *testing.T) {
	home, err := url.Parse("https://idp.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	homeAddr := dialAddr(t, home.String())
	ic := &IssuerConfig{AllowedHosts: []string{"keys.example.net", "k8s.example.org:8443"}}
	pol := newHostPolicy(ic, "issuer's", home)
	// keys.example.net is allowed on any port; DNS names are case-insensitive.
	allowedAddr := func(addr string) bool {
		addr = strings.ToLower(addr)
		host, _, _ := net.SplitHostPort(addr)
		return addr == homeAddr || addr == "k8s.example.org:8443" || host == "keys.example.net"
	}
	tests := []string{
		"https://idp.example.com/jwks",
		"https://IDP.Example.COM/jwks",
		"https://idp.example.com:443/jwks",
		"https://\u0130dp.example.com/jwks",           // İ: ToLower "i", IDNA "i̇"
		"https://idp.example.\u0130om/jwks",           // not a letter the host has
		"https://\uff49\uff44\uff50.example.com/jwks", // fullwidth "idp": IDNA maps to ASCII
		"https://idp\u3002example\u3002com/jwks",      // ideographic full stops
		"https://id\u00adp.example.com/jwks",          // soft hyphen, mapped away
		"https://idp.example.com./jwks",               // trailing dot: another name to dial
		"https://idp.example.com:8443/jwks",
		"https://keys.example.net/jwks",
		"https://keys.example.net:8443/jwks",
		"https://\u212Aeys.example.net/jwks", // Kelvin sign: IDNA maps to "k" too
		"https://keys.example.ne\u0130/jwks",
		"https://k8s.example.org:8443/jwks",
		"https://\u212A8s.example.org:8443/jwks",
		"https://k8s.example.org/jwks",
		"https://%C4%B0dp.example.com/jwks",    // İ percent-encoded
		"https://xn--idp-8dc.example.com/jwks", // the punycode İ leads to
		"https://[::1]/jwks",
	}
	for _, raw := range tests {
		t.Run(raw, func(t *testing.T) {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			want := allowedAddr(dialAddr(t, raw))
			if got := pol.check(u) == nil; got != want {
				t.Fatalf("check(%q) allows = %v, but net/http dials %s (allowed: %v)", raw, got, dialAddr(t, raw), want)
			}
		})
	}
}
