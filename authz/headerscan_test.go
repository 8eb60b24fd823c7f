package authz

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/tokens"
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

// TestSetMemo holds the memoised identity headers to a fresh rendering, and
// checks that an entry is served only to a principal with every rendered
// input the same.
func TestSetMemo(t *testing.T) {
	h := compileIdentity(IdentityHeaders{Subject: "x-sub", Issuer: "x-iss", Scopes: "x-scopes", Claims: map[string]string{"email": "x-email"}})
	claims := map[string]any{"email": "alice@example.com"}
	scopes := []string{"read", "write"}
	id := &Identity{Principal: tokens.Principal{Subject: "alice", Issuer: "iss", Scopes: scopes, Claims: claims}}
	set, remove, ok := h.render(id, &headerScan{}, "")
	want, _ := h.renderSet(id)
	if !ok || !slices.Equal(set, want) || len(set) != cap(set) {
		t.Fatalf("first render %v (cap %d) %v, want %v clipped", set, cap(set), ok, want)
	}
	if _, _, hit := h.sets.get(id, ""); !hit {
		t.Fatal("a principal with Claims was not memoised")
	}
	again, remove2, _ := h.render(id, &headerScan{}, "")
	if &again[0] != &set[0] || !slices.Equal(remove, remove2) {
		t.Errorf("second render not served from the memo: %v", again)
	}
	// The same Claims map (a verifier sharing one) with any other input
	// changed is rendered afresh.
	for _, other := range []tokens.Principal{
		{Subject: "bob", Issuer: "iss", Scopes: scopes, Claims: claims},
		{Subject: "alice", Issuer: "other", Scopes: scopes, Claims: claims},
		{Subject: "alice", Issuer: "iss", Method: "jwt", Scopes: scopes, Claims: claims},
		{Subject: "alice", Issuer: "iss", AppID: "app", Scopes: scopes, Claims: claims},
		{Subject: "alice", Issuer: "iss", Scopes: []string{"read", "write"}, Claims: claims}, // equal, not the same slice
		{Subject: "alice", Issuer: "iss", Scopes: scopes[:1], Claims: claims},
		{Subject: "alice", Issuer: "iss", Scopes: scopes, Claims: map[string]any{"email": "mallory@example.com"}},
	} {
		oid := &Identity{Principal: other}
		got, _, ok := h.render(oid, &headerScan{}, "")
		want, wantOK := h.renderSet(oid)
		if ok != wantOK || !slices.Equal(got, want) {
			t.Errorf("%+v: render %v %v, want %v %v", other, got, ok, want, wantOK)
		}
	}
	// Subjects sharing one Claims map (API keys do) are memoised each.
	for _, sub := range []string{"alice", "bob"} {
		h.render(&Identity{Principal: tokens.Principal{Subject: sub, Issuer: "iss", Scopes: scopes, Claims: claims}}, &headerScan{}, "")
	}
	for _, sub := range []string{"alice", "bob"} {
		oid := &Identity{Principal: tokens.Principal{Subject: sub, Issuer: "iss", Scopes: scopes, Claims: claims}}
		if got, _, hit := h.sets.get(oid, ""); !hit || got[0].Value != sub {
			t.Errorf("subject %s sharing the map: memo %v, hit %v", sub, got, hit)
		}
	}
	// A principal that cannot be forwarded is refused, and not memoised.
	bad := &Identity{Principal: tokens.Principal{Subject: "alice\n", Claims: map[string]any{}}}
	if _, _, ok := h.render(bad, &headerScan{}, ""); ok {
		t.Error("a subject with a newline was rendered")
	}
	if _, _, hit := h.sets.get(bad, ""); hit {
		t.Error("a refused principal was memoised")
	}
	// Without Claims nothing is memoised (no address to find it by).
	plain := &Identity{Principal: tokens.Principal{Subject: "carol"}}
	h.render(plain, &headerScan{}, "")
	if _, _, hit := h.sets.get(plain, ""); hit {
		t.Error("a principal without Claims was memoised")
	}
}

// TestSetMemoListsClipped: the memoised lists are shared by every request
// of a principal, and Decide appends to them; with spare capacity those
// appends would write into the shared array. Also with more identity
// headers than the removal memo's mask holds.
func TestSetMemoListsClipped(t *testing.T) {
	for _, extra := range []int{0, 70} {
		cfg := IdentityHeaders{Subject: "x-sub", Issuer: "x-iss", Scopes: "x-scopes"}
		for i := range extra {
			cfg.AlsoRemove = append(cfg.AlsoRemove, "x-extra-"+strconv.Itoa(i))
		}
		h := compileIdentity(cfg)
		id := &Identity{Principal: tokens.Principal{Subject: "alice", Claims: map[string]any{}}}
		for round := range 2 {
			set, remove, ok := h.render(id, &headerScan{}, "")
			if !ok || len(set) != cap(set) || len(remove) != cap(remove) || len(remove) != len(h.all)-1 {
				t.Fatalf("extra %d round %d: set %d/%d, remove %d/%d of %d names, ok %v", extra, round, len(set), cap(set), len(remove), cap(remove), len(h.all), ok)
			}
		}
	}
}

func TestSetMemoBounded(t *testing.T) {
	h := compileIdentity(IdentityHeaders{Subject: "x-sub"})
	keep := make([]*Identity, 0, 3*setMemoShards*setMemoPerShard)
	for i := range cap(keep) {
		id := &Identity{Principal: tokens.Principal{Subject: "u" + strconv.Itoa(i), Claims: map[string]any{}}}
		keep = append(keep, id)
		if _, _, ok := h.render(id, &headerScan{}, ""); !ok {
			t.Fatal("render refused")
		}
	}
	for i := range h.sets.shards {
		if n := len(h.sets.shards[i].m); n > setMemoPerShard {
			t.Errorf("shard %d holds %d entries, more than %d", i, n, setMemoPerShard)
		}
	}
	// Every principal still renders its own subject, memoised or not.
	for i, id := range keep {
		set, _, _ := h.render(id, &headerScan{}, "")
		if len(set) != 1 || set[0].Value != "u"+strconv.Itoa(i) {
			t.Fatalf("principal %d rendered %v", i, set)
		}
	}
}

// TestDecideRemoveHeadersOrder pins the headers an allowed request removes,
// in the order Decide always gave them (identity headers and their variant
// spellings, the override headers, the stripped credential, its variant
// spellings), for principals served from the memo (the same Claims map on
// every call, as a verifier's cache hit) and through two authenticators
// that strip different headers.
func TestDecideRemoveHeadersOrder(t *testing.T) {
	claims := map[string]any{"team": "platform"}
	scopes := []string{"read"}
	verifier := VerifierFunc(func(context.Context, string) (tokens.Principal, error) {
		return tokens.Principal{Subject: "alice", Issuer: "keys", Scopes: scopes, Claims: claims}, nil
	})
	p := orderPipeline(t, verifier, "")
	for _, c := range []struct {
		path    string
		headers map[string]string
		want    []string
	}{
		{"/key/a", map[string]string{"x-api-key": "k"}, []string{"x-email", "x-api-key"}},
		{"/bearer/a", map[string]string{"authorization": "Bearer k"}, []string{"x-email", "authorization"}},
		{"/key/a", map[string]string{"x-api-key": "k", "x-http-method-override": "GET", "x-original-url": "/x"},
			[]string{"x-email", "x-http-method-override", "x-original-url", "x-api-key"}},
		{"/key/a", map[string]string{"x-api-key": "k", "X_Sub": "mallory", "x-http-method": "GET"},
			[]string{"x-email", "X_Sub", "x-http-method", "x-api-key"}},
		{"/bearer/a", map[string]string{"authorization": "Bearer k", "X_Email": "m@example.com", "x-rewrite-url": "/x"},
			[]string{"x-email", "X_Email", "x-rewrite-url", "authorization"}},
		{"/bearer/a", map[string]string{"authorization": "Bearer k", "X_Email": "m@example.com"}, []string{"x-email", "X_Email", "authorization"}},
		{"/key/a", map[string]string{"x-api-key": "k"}, []string{"x-email", "x-api-key"}},
	} {
		for round := range 2 { // the second from the memo
			d := p.Decide(context.Background(), &Request{Method: "GET", Host: "h", Path: c.path, Headers: c.headers})
			if d.Code != OK {
				t.Fatalf("%s %v: %v %s", c.path, c.headers, d.Code, d.Reason)
			}
			if !slices.Equal(d.RemoveHeaders, c.want) {
				t.Errorf("%s %v round %d: remove %q, want %q", c.path, c.headers, round, d.RemoveHeaders, c.want)
			}
			if want := []Header{{"x-iss", "keys"}, {"x-scopes", "read"}, {"x-sub", "alice"}, {"x-team", "platform"}}; !sameHeaders(d.UpstreamHeaders, want) {
				t.Errorf("%s round %d: set %v, want %v", c.path, round, d.UpstreamHeaders, want)
			}
		}
	}
}

func sameHeaders(a, b []Header) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	less := func(x, y Header) int { return strings.Compare(x.Name, y.Name) }
	slices.SortFunc(a, less)
	slices.SortFunc(b, less)
	return slices.Equal(a, b)
}

// TestPlainHeaderNameMeansEmptyScan: a request whose names are all plain
// has nothing for the scan to find, so skipping it (Request.PlainHeaderNames)
// changes no decision.
func TestPlainHeaderNameMeansEmptyScan(t *testing.T) {
	rnd := rand.New(rand.NewPCG(20, 12))
	names := append(slices.Clone(headerNamePool), "x-http-method-overrid", "x-http-metho", "x-original-ur", "x-", "x-a", "")
	plainSeen := 0
	for range 20000 {
		headers := map[string]string{}
		plain := true
		for range rnd.IntN(6) {
			n := names[rnd.IntN(len(names))]
			headers[n] = "GET"
			plain = plain && PlainHeaderName(n)
		}
		if !plain {
			continue
		}
		plainSeen++
		if s := scanHeaders(headers); s.variants != nil || s.names != nil || s.targets != nil {
			t.Fatalf("%v: every name plain, yet the scan found %+v", headers, s)
		}
	}
	if plainSeen < 100 {
		t.Fatalf("only %d plain header sets drawn", plainSeen)
	}
	for k := range methodOverrideKeys {
		if PlainHeaderName(k) {
			t.Errorf("PlainHeaderName(%q) = true", k)
		}
	}
	for k := range targetOverrideKeys {
		if PlainHeaderName(k) {
			t.Errorf("PlainHeaderName(%q) = true", k)
		}
	}
}

func orderPipeline(t *testing.T, verifier Verifier, methodOverride string) *Pipeline {
	t.Helper()
	rule := func(name, prefix, auth string) RuleConfig {
		return RuleConfig{Name: name, Match: MatchConfig{Path: PathMatch{Prefix: prefix}}, Action: ActionAuthenticate, Authenticators: []string{auth}}
	}
	p, err := NewPipeline(Config{Realm: "t", MethodOverride: methodOverride, IdentityHeaders: IdentityHeaders{Subject: "x-sub", Issuer: "x-iss", Method: "-", AppID: "-", Scopes: "x-scopes",
		Claims: map[string]string{"team": "x-team", "email": "x-email"}},
		Rules: []RuleConfig{rule("key", "/key/", "key"), rule("bearer", "/bearer/", "bearer"),
			{Name: "open", Match: MatchConfig{Path: PathMatch{Prefix: "/open/"}}, Action: ActionAllow}}},
		[]*Authenticator{
			{Name: "key", Source: CredentialSource{Header: "x-api-key"}, Verifier: verifier, StripCredential: true},
			{Name: "bearer", Source: CredentialSource{Authorization: "Bearer"}, Verifier: verifier, StripCredential: true},
		}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDecidePlainHeaderNames: a request that truthfully promises plain
// header names gets the decision it gets without the promise, in every
// method override mode.
func TestDecidePlainHeaderNames(t *testing.T) {
	claims := map[string]any{"team": "platform"}
	verifier := VerifierFunc(func(_ context.Context, cred string) (tokens.Principal, error) {
		return tokens.Principal{Subject: "u-" + cred, Claims: claims}, nil
	})
	rnd := rand.New(rand.NewPCG(20, 13))
	for _, mode := range []string{MethodOverrideStrip, MethodOverrideReject, MethodOverrideMatch} {
		p := orderPipeline(t, verifier, mode)
		promised := 0
		for range 3000 {
			headers := map[string]string{}
			plain := true
			for range rnd.IntN(6) {
				n := headerNamePool[rnd.IntN(len(headerNamePool))]
				headers[n] = []string{"GET", "Bearer k", "k", "/admin"}[rnd.IntN(4)]
				plain = plain && PlainHeaderName(n)
			}
			path := []string{"/key/a", "/bearer/a", "/open/a"}[rnd.IntN(3)]
			without := p.Decide(context.Background(), &Request{Method: "GET", Host: "h", Path: path, Headers: headers})
			with := p.Decide(context.Background(), &Request{Method: "GET", Host: "h", Path: path, Headers: headers, PlainHeaderNames: plain})
			if plain {
				promised++
			}
			if with.Code != without.Code || with.Reason != without.Reason || !slices.Equal(with.RemoveHeaders, without.RemoveHeaders) ||
				!slices.Equal(with.UpstreamHeaders, without.UpstreamHeaders) {
				t.Fatalf("%s %s %v (plain %v): with the promise %v %s %q %v, without %v %s %q %v", mode, path, headers, plain,
					with.Code, with.Reason, with.RemoveHeaders, with.UpstreamHeaders, without.Code, without.Reason, without.RemoveHeaders, without.UpstreamHeaders)
			}
		}
		if promised < 100 {
			t.Fatalf("%s: only %d requests with plain names", mode, promised)
		}
	}
}
