package authz

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The pre-scan walks, kept as the oracle for scanHeaders: each walked the
// whole headers map on its own.

func spellingsWalk(headers map[string]string, keys map[string]bool) []string {
	var out []string
	for k := range headers {
		if isHeaderKey(k) {
			continue
		}
		if keys[headerKey(k)] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func methodOverridesWalk(headers map[string]string) (names, values, targets []string) {
	for k := range headers {
		key := k
		if !isHeaderKey(k) {
			key = headerKey(k)
		}
		switch {
		case methodOverrideKeys[key]:
			names = append(names, k)
		case targetOverrideKeys[key]:
			targets = append(targets, k)
		}
	}
	slices.Sort(names)
	slices.Sort(targets)
	for _, n := range names {
		values = append(values, headers[n])
	}
	return names, values, targets
}

func TestOverrideCandidate(t *testing.T) {
	for _, m := range []map[string]bool{methodOverrideKeys, targetOverrideKeys} {
		for k := range m {
			if !overrideCandidate(k) {
				t.Errorf("overrideCandidate(%q) = false: the length or prefix bounds miss a key", k)
			}
		}
	}
	for _, give := range []string{"", "x", "x-", "authorization", "x-forwarded-for-and-more-than-22", "y-http-method"} {
		if overrideCandidate(give) {
			t.Errorf("overrideCandidate(%q) = true", give)
		}
	}
}

// headerNamePool holds identity, credential and override names in several
// spellings, and ordinary headers.
var headerNamePool = func() []string {
	base := []string{"x-auth-subject", "x-auth-issuer", "x-auth-scopes", "x-api-key", "authorization",
		"x-http-method-override", "x-http-method", "x-method-override", "x-original-url", "x-rewrite-url",
		"user-agent", "accept", "cookie", "x-forwarded-for", "traceparent", "x-request-id", "x-http-methods"}
	var out []string
	for _, n := range base {
		out = append(out, n, strings.ToUpper(n), strings.ReplaceAll(n, "-", "_"),
			strings.ReplaceAll(strings.ToUpper(n[:1])+n[1:], "-", "_"), strings.Replace(n, "-", "_", 1))
	}
	return out
}()

// TestScanHeadersMatchesWalks holds the one-pass scan to the separate walks
// it replaced, on random header sets drawn from a pool rich in variant
// spellings and overrides.
func TestScanHeadersMatchesWalks(t *testing.T) {
	identity := compileIdentity(IdentityHeaders{Subject: "x-auth-subject", Issuer: "X-Auth-Issuer", Scopes: "x-auth-scopes", AlsoRemove: []string{"X_Api_Key"}})
	cred := map[string]bool{headerKey("x-api-key"): true}
	rnd := rand.New(rand.NewPCG(20, 11))
	for i := range 20000 {
		headers := map[string]string{}
		for range rnd.IntN(12) {
			headers[headerNamePool[rnd.IntN(len(headerNamePool))]] = []string{"GET", "DELETE", "post, put", "/admin", ""}[rnd.IntN(5)]
		}
		scan := scanHeaders(headers)
		names, values, targets := methodOverridesWalk(headers)
		if !slices.Equal(scan.names, names) || !slices.Equal(scan.values, values) || !slices.Equal(scan.targets, targets) {
			t.Fatalf("case %d %v: scan overrides %q %q %q, walk %q %q %q", i, headers, scan.names, scan.values, scan.targets, names, values, targets)
		}
		if got, want := scan.spellings(identity.keys), spellingsWalk(headers, identity.keys); !slices.Equal(got, want) {
			t.Fatalf("case %d %v: scan identity spellings %q, walk %q", i, headers, got, want)
		}
		if got, want := scan.spellingsOf(headerKey("x-api-key")), spellingsWalk(headers, cred); !slices.Equal(got, want) {
			t.Fatalf("case %d %v: scan credential spellings %q, walk %q", i, headers, got, want)
		}
		for _, key := range []string{"x-api-key", "authorization", "x_api_key", "x-http-method"} {
			if got, want := scan.otherSpelling(key), otherSpelling(headers, key); got != want {
				t.Fatalf("case %d %v: scan otherSpelling(%q) = %v, walk %v", i, headers, key, got, want)
			}
		}
		r := &Request{Headers: headers}
		for _, src := range []CredentialSource{{Header: "x-api-key"}, {Header: "X_Api_Key"}, {Authorization: "Bearer"}} {
			gotV, gotOK := src.extract(r, &scan)
			wantV, wantOK := src.Extract(r)
			if gotV != wantV || gotOK != wantOK {
				t.Fatalf("case %d %v: %v extract with the scan (%q, %v), without (%q, %v)", i, headers, src.String(), gotV, gotOK, wantV, wantOK)
			}
		}
	}
}

func TestScanHeadersCommonCaseAllocatesNothing(t *testing.T) {
	headers := map[string]string{"authorization": "Bearer x", "user-agent": "ua", "accept": "*/*", "x-forwarded-for": "203.0.113.7"}
	if n := testing.AllocsPerRun(100, func() { _ = scanHeaders(headers) }); n != 0 {
		t.Errorf("scanHeaders allocates %v times for lower-case headers without overrides", n)
	}
}

// TestRemoveUnsetMemo holds the memoised removal lists to the computed
// ones for every subset of the identity headers set, twice (the second
// time from the memo), and checks that a returned list has no spare
// capacity, so Decide's appends (override and credential headers) copy it.
func TestRemoveUnsetMemo(t *testing.T) {
	h := compileIdentity(IdentityHeaders{Subject: "x-sub", Issuer: "x-iss", Method: "x-method", AppID: "x-app", Scopes: "x-scopes",
		Claims: map[string]string{"email": "x-email", "tenant": "x-tenant"}, AlsoRemove: []string{"x-legacy-user"}})
	names := []string{"x-sub", "x-iss", "x-method", "x-app", "x-scopes", "x-email", "x-tenant"}
	for round := range 2 {
		for m := range 1 << len(names) {
			var set []Header
			for i, n := range names {
				if m&(1<<i) != 0 {
					set = append(set, Header{Name: n, Value: "v"})
				}
			}
			got := h.removeUnset(set)
			if want := h.removeUnsetSlow(set); !slices.Equal(got, want) {
				t.Fatalf("round %d mask %b: removeUnset %q, want %q", round, m, got, want)
			}
			if len(got) != cap(got) {
				t.Fatalf("mask %b: a shared list with spare capacity (%d of %d) would be written by append", m, len(got), cap(got))
			}
		}
	}
	// 128 masks: past the bound it still answers correctly, without storing.
	if stored := len(*h.removals.m.Load()); stored != maxRemovalMasks {
		t.Errorf("memo holds %d lists after 128 masks, want its bound %d", stored, maxRemovalMasks)
	}
}
