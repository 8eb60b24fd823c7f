package authz

import (
	"context"
	"strings"
	"testing"

	"github.com/google/cel-go/common/types"

	"github.com/ext-authz/ext-authz/tokens"
)

func condRequest() *Request {
	return &Request{Method: "GET", Host: "api.example.com", Path: "/a/1", Query: "x=1&y=a%20b",
		Headers: map[string]string{"x-tenant": "t1"}, PeerAddress: "10.1.2.3",
		ContextExtensions: map[string]string{"route": "r1"}, SourcePrincipal: "spiffe://td/ns/a/sa/b"}
}

func condIdentity() *Identity {
	return &Identity{Principal: tokens.Principal{Subject: "alice", Issuer: "iss", Method: "jwt", Scopes: []string{"read"},
		Claims: map[string]any{"tenant": "t1", "groups": []any{"dev", "ops"}, "n": float64(3)}}, Authenticator: "jwt", Plan: "gold"}
}

func TestConditionEval(t *testing.T) {
	tests := []struct {
		give string
		want condResult
	}{
		{"request.headers['x-tenant'] == principal.claims.tenant", condTrue},
		{"principal.claims.groups.exists(g, g == 'ops')", condTrue},
		{"principal.claims.groups.exists(g, g == 'admin')", condFalse},
		{"ip(request.client_address).in_cidr('10.0.0.0/8')", condTrue},
		{"ip(request.client_address).in_cidr('10.0.0.0/8x')", condError},
		{"cidr('10.0.0.0/8').containsIP(request.client_address)", condTrue},
		{"request.query['y'] == 'a b' && request.query['x'] == '1'", condTrue},
		{"request.context_extensions['route'] == 'r1'", condTrue},
		{"request.source_principal.startsWith('spiffe://td/')", condTrue},
		{"principal.subject == 'alice' && principal.issuer == 'iss' && principal.authenticator == 'jwt' && principal.plan == 'gold'", condTrue},
		{"'read' in principal.scopes && principal.method == 'jwt'", condTrue},
		{"principal.claims.n > 2.0", condTrue},
		{"principal.claims.missing == 'x'", condError},
		{"has(principal.claims.missing) && principal.claims.missing == 'x'", condFalse},
		{"request.headers['absent'] == 'x'", condError},
		{"request.path.matches('^/a/[0-9]+$')", condTrue},
		{"request.host == 'api.example.com' && request.method == 'GET' && request.scheme == ''", condTrue},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			cs, err := compileConditions([]string{tt.give}, true)
			if err != nil {
				t.Fatal(err)
			}
			a := &condActivation{req: *condRequest(), id: condIdentity()}
			if got, err := cs[0].eval(a); got != tt.want {
				t.Fatalf("eval = %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func TestConditionCompileErrors(t *testing.T) {
	tests := []struct {
		give          string
		withPrincipal bool
		want          string
	}{
		{"", true, "empty expression"},
		{"request.method ==", true, "Syntax error"},
		{"request.path", true, "a condition must be a bool"},
		{"principal.subject == 'a'", false, "match.when is decided before authentication"},
		{"request.nope == 'a'", true, "undeclared reference"},
		{"request.method == 1", true, "no matching overload"},
		{"request.headers.all(k, request.headers.all(j, request.headers[k] + request.headers[j] != ''))", true, "over the limit"},
		{"principal.claims.groups.all(a, principal.claims.groups.all(b, a != b))", true, "over the limit"},
		{strings.Repeat("request.method == 'GET' && ", 200) + "true", true, "longer than"},
		{"request.path.matches('(')", true, "missing closing"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := compileConditions([]string{tt.give}, tt.withPrincipal)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("compile(%q) = %v, want an error containing %q", tt.give, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
}

// TestConditionBeyondEstimate: a request with values larger than the load
// estimate assumed is still decided, by the evaluation under the runtime
// cost limit, and one whose cost then exceeds the limit fails closed.
func TestConditionBeyondEstimate(t *testing.T) {
	big := strings.Repeat("a", maxConditionValueSize+10)
	cs, err := compileConditions([]string{
		"request.headers['x-big'].endsWith('a')",
		"request.headers.all(k, !request.headers[k].contains('zz'))",
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	r := condRequest()
	r.Headers = map[string]string{"x-big": big}
	a := &condActivation{req: *r}
	if got, err := cs[0].eval(a); got != condTrue {
		t.Fatalf("big header: %v (%v), want true", got, err)
	}
	// 128 headers of 640 KiB: each contains() reads it all, far past the
	// limit the estimate (128 headers of 64 KiB) stayed under.
	r.Headers = map[string]string{}
	huge := strings.Repeat("b", 10*maxConditionValueSize)
	for i := range maxConditionMapEntries {
		r.Headers["h"+itoa(i)] = huge
	}
	a = &condActivation{req: *r}
	if got, err := cs[1].eval(a); got != condCost {
		t.Fatalf("huge headers: %v (%v), want the cost limit", got, err)
	}
}

// TestConditionCostDeniesRequest: the runtime limit denies with its own
// reason, naming the rule.
func TestConditionCostDeniesRequest(t *testing.T) {
	p, err := NewPipeline(Config{Rules: []RuleConfig{{Name: "r", Action: ActionAllow,
		When: []string{"request.headers.all(k, !request.headers[k].contains('zz'))"}}}}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &Request{Method: "GET", Host: "h", Path: "/", Headers: map[string]string{}}
	huge := strings.Repeat("b", 10*maxConditionValueSize)
	for i := range maxConditionMapEntries {
		r.Headers["h"+itoa(i)] = huge
	}
	d := p.Decide(context.Background(), r)
	if d.Code != Forbidden || d.Reason != ReasonConditionCost || d.Rule != "r" {
		t.Fatalf("decision %v %s %s, want forbidden %s r", d.Code, d.Reason, d.Rule, ReasonConditionCost)
	}
}

// FuzzConditions compiles an expression from the input and evaluates it
// over an activation from the input: compiling and evaluating never panic,
// an accepted expression yields a bool or fails closed, and the bounded
// evaluation agrees with the one under the runtime cost limit.
func FuzzConditions(f *testing.F) {
	for _, s := range []string{
		"request.headers['x-tenant'] == principal.claims.tenant",
		"principal.claims.groups.exists(g, g == 'ops')",
		"ip(request.client_address).in_cidr('10.0.0.0/8')",
		"request.query['a'].matches('^[a-z]+$')",
		"request.path.split('/').size() > 2",
		"has(principal.claims.x) ? principal.claims.x : false",
	} {
		f.Add(s, "t1", "a=b&c", "10.0.0.1", "ops")
	}
	f.Fuzz(func(t *testing.T, expr, header, query, peer, claim string) {
		if len(expr) > 512 || len(header)+len(query)+len(peer)+len(claim) > 1024 {
			return
		}
		cs, err := compileConditions([]string{expr}, true)
		if err != nil {
			return
		}
		c := cs[0]
		r := &Request{Method: "GET", Host: "h", Path: "/p", Query: query, Headers: map[string]string{"x-tenant": header}, PeerAddress: peer}
		id := &Identity{Principal: tokens.Principal{Subject: claim, Scopes: []string{claim}, Claims: map[string]any{"tenant": claim, "groups": []any{claim, "x"}}}}
		res, _ := c.eval(&condActivation{req: *r, id: id})
		if res > condCost {
			t.Fatalf("result %d", res)
		}
		out, _, terr := c.tracked.Eval(&condActivation{req: *r, id: id})
		switch {
		case terr != nil && res == condTrue:
			t.Fatalf("bounded evaluation true, tracked one failed: %v", terr)
		case terr == nil && res != condError && res != condCost && (out.Value() == true) != (res == condTrue):
			t.Fatalf("bounded %v, tracked %v", res, out)
		}
	})
}

// refActivation is condActivation with cel-go's own map values: the
// oracle strMap and claimMap are compared with.
type refActivation struct{ *condActivation }

func (a refActivation) ResolveName(name string) (any, bool) {
	r := &a.req
	switch name {
	case "request.headers":
		return types.NewStringStringMap(types.DefaultTypeAdapter, r.Headers), true
	case "request.context_extensions":
		return types.NewStringStringMap(types.DefaultTypeAdapter, r.ContextExtensions), true
	case "request.query":
		return types.NewStringStringMap(types.DefaultTypeAdapter, parseConditionQuery(r.Query)), true
	case "principal.claims":
		return types.NewStringInterfaceMap(types.DefaultTypeAdapter, a.id.Claims), true
	}
	return a.condActivation.ResolveName(name)
}

// TestConditionMapsMatchCEL: every map operation gives what cel-go's own
// map values give (result and error alike).
func TestConditionMapsMatchCEL(t *testing.T) {
	exprs := []string{
		"request.headers['x-tenant'] == 't1'",
		"request.headers['nope'] == 't1'",
		"'x-tenant' in request.headers",
		"'nope' in request.headers",
		"has(request.headers.nope)",
		"request.headers.size() == 1",
		"request.headers.exists(k, k == 'x-tenant')",
		"request.headers.all(k, request.headers[k] != '')",
		"request.headers == {'x-tenant': 't1'}",
		"request.headers != {'x-tenant': 't2'}",
		"request.query == {'x': '1', 'y': 'a b'}",
		"request.query.map(k, k).size() == 2",
		"request.context_extensions.filter(k, k.startsWith('r')).size() == 1",
		"dyn(request.headers)[1] == 'x'",
		"principal.claims.groups == ['dev', 'ops']",
		"principal.claims.n == 3",
		"principal.claims.nope == 1",
		"'tenant' in principal.claims && size(principal.claims) == 3",
		"principal.claims.exists(k, k == 'groups')",
		"principal.claims == {'tenant': 't1', 'groups': ['dev', 'ops'], 'n': 3.0}",
		"dyn(principal.claims)[2] == 1",
	}
	for _, src := range exprs {
		cs, err := compileConditions([]string{src}, true)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		a := &condActivation{req: *condRequest(), id: condIdentity(), bounded: false}
		got, _, gerr := cs[0].prg.Eval(a)
		want, _, werr := cs[0].prg.Eval(refActivation{&condActivation{req: *condRequest(), id: condIdentity()}})
		if (gerr == nil) != (werr == nil) || (gerr == nil && got.Equal(want) != types.True) {
			t.Errorf("%s: got %v (%v), cel-go's maps give %v (%v)", src, got, gerr, want, werr)
		}
	}
}
