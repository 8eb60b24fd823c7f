package authz

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// Conditions are CEL expressions (github.com/google/cel-go, the language
// of Kubernetes, Envoy RBAC and Envoy Gateway) over the request and, for
// authenticated rules, the principal. Where they sit in the decision:
//
//   - match.when is part of matching, like hosts, paths and methods. It
//     sees only the request (naming principal is a load error), so it can
//     be decided before any credential is verified. A rule whose
//     match.when is false does not match, and first-match goes on to the
//     next rule: exactly as if the rule's path did not match.
//   - when (beside require) is a requirement: it is checked after the
//     rule matched and authenticated the caller, with the requirements
//     (scopes, claims). False denies the request 403 condition_failed,
//     with the rule named in the decision; no later rule is tried, as no
//     later rule is tried when a scope is missing. That is the reason for
//     the split: whether a rule applies to a request must not depend on
//     who claims to send it, or a caller could pick a more permissive
//     later rule by presenting (or withholding) a credential. The body
//     names the reason only, never a claim value.
//
// An expression that cannot be evaluated (a missing header or claim read
// without has(), a bad ip() argument, the cost limit reached) fails
// closed: in a requirement it denies like false, with the reason
// condition_error; in match.when it denies the request with
// condition_error when its rule is reached before the rule that matched,
// since treating it as "no match" could let a later, more permissive rule
// decide.

// ConditionCostLimit bounds the cost of one condition, in CEL cost units
// (about one per operation, and per 10 bytes a string function reads):
// at load, the checker's estimate of the worst case over every request
// the gateway admits (header values and claims up to
// maxConditionValueSize) must be within it; at run time the evaluation
// stops when it is spent, and the condition fails closed.
const ConditionCostLimit = 1_000_000

// maxConditionValueSize is the largest size (bytes of a string, entries of
// a list or map) the cost estimate assumes of any value of the request or
// principal: Envoy's default header limits (60 KiB of headers, 100 of
// them) bound the request, and a credential fits in a header.
const maxConditionValueSize = 64 << 10

// maxConditionMapEntries is the most headers (Envoy's default
// max_request_headers_count is 100) or context extensions the cost
// estimate assumes.
const maxConditionMapEntries = 128

// maxConditionLength bounds the text of one condition.
const maxConditionLength = 4096

// Condition errors as reasons of a decision.
const (
	ReasonConditionFailed = "condition_failed"
	ReasonConditionError  = "condition_error"
)

// condVar names a variable of conditions; each is declared on its own
// ("request.headers" is one variable), so a misspelt field is a load
// error and the activation builds only the values an expression reads.
type condVar struct {
	name string
	typ  *cel.Type
}

var requestVars = []condVar{
	{"request.method", cel.StringType},
	{"request.host", cel.StringType},
	{"request.path", cel.StringType},
	{"request.scheme", cel.StringType},
	{"request.query", cel.MapType(cel.StringType, cel.StringType)},
	{"request.headers", cel.MapType(cel.StringType, cel.StringType)},
	{"request.client_address", cel.StringType},
	{"request.context_extensions", cel.MapType(cel.StringType, cel.StringType)},
	{"request.source_principal", cel.StringType},
}

var principalVars = []condVar{
	{"principal.subject", cel.StringType},
	{"principal.issuer", cel.StringType},
	{"principal.authenticator", cel.StringType},
	{"principal.method", cel.StringType},
	{"principal.app_id", cel.StringType},
	{"principal.scopes", cel.ListType(cel.StringType)},
	{"principal.claims", cel.MapType(cel.StringType, cel.DynType)},
	{"principal.plan", cel.StringType},
}

// condEnvs are the two environments: request only (match.when, and when
// of an anonymous rule) and request with principal (when of an
// authenticate rule). cel.Env is safe for concurrent use.
var condEnvs = sync.OnceValues(func() ([2]*cel.Env, error) {
	base := []cel.EnvOption{
		ext.Strings(),
		ext.Network(),
		ext.Lists(),
		ext.Sets(),
		cel.ParserExpressionSizeLimit(maxConditionLength),
		cel.RegexProgramSizeLimit(1000),
		cel.Function("in_cidr",
			cel.MemberOverload("ip_in_cidr_string", []*cel.Type{ext.IPType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(ipInCIDR))),
	}
	var out [2]*cel.Env
	for i, vars := range [][]condVar{requestVars, append(append([]condVar(nil), requestVars...), principalVars...)} {
		opts := append([]cel.EnvOption(nil), base...)
		for _, v := range vars {
			opts = append(opts, cel.Variable(v.name, v.typ))
		}
		env, err := cel.NewEnv(opts...)
		if err != nil {
			return out, err
		}
		out[i] = env
	}
	return out, nil
})

// ipInCIDR is <ip>.in_cidr(string): whether the address is in the range
// (false across families); an invalid range is an error.
func ipInCIDR(lhs, rhs ref.Val) ref.Val {
	ip, ok := lhs.(ext.IP)
	if !ok {
		return types.NewErr("in_cidr: not an ip")
	}
	s, ok := rhs.(types.String)
	if !ok {
		return types.NewErr("in_cidr: the range must be a string")
	}
	p, err := netip.ParsePrefix(string(s))
	if err != nil {
		return types.NewErr("in_cidr: %q is not a CIDR range", string(s))
	}
	return types.Bool(p.Contains(ip.Addr))
}

// condition is one compiled expression: prg without cost tracking, for
// requests within the estimate's sizes, and tracked under the runtime
// cost limit for any other (see eval).
type condition struct {
	src     string
	prg     cel.Program
	tracked cel.Program
}

// condSizeEstimator tells the cost estimate the largest size of every
// value of the request and principal (see maxConditionValueSize).
type condSizeEstimator struct{}

func (condSizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	p := n.Path()
	if len(p) == 0 || !(strings.HasPrefix(p[0], "request.") || strings.HasPrefix(p[0], "principal.")) {
		return nil
	}
	if len(p) == 1 && (p[0] == "request.headers" || p[0] == "request.context_extensions") {
		return &checker.SizeEstimate{Min: 0, Max: maxConditionMapEntries}
	}
	return &checker.SizeEstimate{Min: 0, Max: maxConditionValueSize}
}

func (condSizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// errPrincipalInMatch explains why match.when cannot name the principal.
var errPrincipalInMatch = errors.New("match.when is decided before authentication and sees only request; check the principal in the rule's when")

// compileConditions compiles each expression; withPrincipal declares the
// principal. Errors are per expression: "[i]: message".
func compileConditions(srcs []string, withPrincipal bool) ([]*condition, error) {
	if len(srcs) == 0 {
		return nil, nil
	}
	envs, err := condEnvs()
	if err != nil {
		return nil, fmt.Errorf("conditions: %w", err)
	}
	env := envs[0]
	if withPrincipal {
		env = envs[1]
	}
	var errs []error
	out := make([]*condition, len(srcs))
	for i, src := range srcs {
		c, err := compileCondition(env, src, withPrincipal)
		if err != nil {
			errs = append(errs, yamlfile.Errorf("["+strconv.Itoa(i)+"]", "%w", err))
			continue
		}
		out[i] = c
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func compileCondition(env *cel.Env, src string, withPrincipal bool) (*condition, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}
	if len(src) > maxConditionLength {
		return nil, fmt.Errorf("longer than %d bytes", maxConditionLength)
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		msg := oneLine(iss.Err().Error())
		switch {
		case !withPrincipal && strings.Contains(msg, "undeclared reference to 'principal'"):
			return nil, fmt.Errorf("%s (%w)", msg, errPrincipalInMatch)
		case strings.Contains(msg, "undeclared reference to 'request'") || strings.Contains(msg, "undeclared reference to 'principal'"):
			return nil, fmt.Errorf("%s (fields: %s)", msg, varNames(withPrincipal))
		}
		return nil, errors.New(msg)
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("%q is of type %s; a condition must be a bool", src, ast.OutputType())
	}
	if err := checkJoins(ast); err != nil {
		return nil, err
	}
	est, err := env.EstimateCost(ast, condSizeEstimator{})
	if err != nil {
		return nil, fmt.Errorf("estimating its cost: %w", err)
	}
	if est.Max > ConditionCostLimit {
		return nil, fmt.Errorf("%q may cost up to %d, over the limit of %d per condition (bound the sizes it iterates over, or split it)", src, est.Max, ConditionCostLimit)
	}
	opts := []cel.ProgramOption{cel.OptimizeRegex(interpreter.MatchesRegexOptimization), cel.EvalOptions(cel.OptOptimize)}
	prg, err := env.Program(ast, opts...)
	if err != nil {
		return nil, err
	}
	tracked, err := env.Program(ast, append(opts, cel.CostLimit(ConditionCostLimit))...)
	if err != nil {
		return nil, err
	}
	return &condition{src: src, prg: prg, tracked: tracked}, nil
}

// checkJoins refuses a join of any list but one of string constants.
// cel-go estimates a join by the number of the list's elements, not their
// sizes, so the cost estimate would admit a join of computed strings
// (lists.range(50000).map(x, request.path).join()) that builds gigabytes
// for one request; the runtime cost limit notices only once the string is
// built. A join of constants costs what the condition spells.
func checkJoins(a *cel.Ast) error {
	for _, e := range celast.MatchDescendants(celast.NavigateAST(a.NativeRep()), celast.FunctionMatcher("join")) {
		call := e.AsCall()
		if !call.IsMemberFunction() || !constantStrings(call.Target()) {
			return errors.New("join of a list that is not written out of string constants: its size cannot be bounded (concatenate with + instead)")
		}
	}
	return nil
}

// constantStrings reports whether e is a list literal of string literals.
func constantStrings(e celast.Expr) bool {
	if e.Kind() != celast.ListKind {
		return false
	}
	for _, el := range e.AsList().Elements() {
		if el.Kind() != celast.LiteralKind {
			return false
		}
		if _, ok := el.AsLiteral().(types.String); !ok {
			return false
		}
	}
	return true
}

// oneLine folds a multi-line CEL diagnostic (it draws a caret under the
// expression) into one line for a file:line: field: message error.
func oneLine(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "|") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "; ")
}

// varNames lists the variables for an error message.
func varNames(withPrincipal bool) string {
	vars := requestVars
	if withPrincipal {
		vars = append(append([]condVar(nil), requestVars...), principalVars...)
	}
	names := make([]string, len(vars))
	for i, v := range vars {
		names[i] = v.name
	}
	return strings.Join(names, ", ")
}

// condResult is the outcome of one condition.
type condResult uint8

const (
	condFalse condResult = iota
	condTrue
	condError // could not be evaluated; fail closed
	condCost  // the cost limit was reached; fail closed
)

// eval evaluates c under a; it never panics (cel-go recovers its own).
//
// The runtime cost limit: the load-time estimate bounds the cost of every
// request whose values are within the sizes it assumed
// (maxConditionValueSize, maxConditionMapEntries), so such requests run
// the program without cost tracking, which would cost five more
// allocations per evaluation. The activation checks each value it hands
// out against those sizes; one beyond them makes that evaluation void
// (the activation answers it with an error) and the condition runs again
// under cel.CostLimit(ConditionCostLimit), which stops it when the limit
// is spent: condCost, failing closed.
func (c *condition) eval(a *condActivation) (condResult, error) {
	a.bounded, a.over = true, false
	out, _, err := c.prg.Eval(a)
	if a.over {
		a.bounded = false
		out, _, err = c.tracked.Eval(a)
		a.bounded = true
	}
	if err != nil {
		if strings.Contains(err.Error(), "cost limit exceeded") {
			return condCost, err
		}
		return condError, err
	}
	if b, ok := out.(types.Bool); ok {
		if b {
			return condTrue, nil
		}
		return condFalse, nil
	}
	return condError, fmt.Errorf("not a bool: %s", out.Type())
}

// errOversize answers a value beyond the estimate's sizes in a bounded
// evaluation (which eval then repeats under the runtime cost limit).
var errOversize = types.NewErr("value larger than the cost estimate assumed")

// condActivation resolves the variables of conditions for one request,
// building each value the first time an expression reads it: headers,
// context extensions and claims are wrapped, not copied; the query is
// parsed once, only when read.
type condActivation struct {
	// req is a copy of the request (its maps shared, not copied): the
	// activation escapes into CEL, and a pointer would make every
	// request escape, conditions or not.
	req  Request
	id   *Identity
	hops int

	// bounded: hand out only values within the estimate's sizes, and set
	// over (answering errOversize) for any other.
	bounded, over bool
	// seen, when set (Explain), is told each variable an expression reads.
	seen func(name string)

	// Values built once per request, shared by its conditions (the maps
	// live here, so handing them out allocates nothing), and whether each
	// is beyond the estimate's sizes.
	headers, ctxExt, query strMap
	claims                 claimMap
	scopes                 ref.Val
	built                  uint8 // bits: bigHeaders... of the maps set up
	big                    uint8 // bits: bigHeaders...
	sized                  uint8 // bits of big computed
}

const (
	bigHeaders uint8 = 1 << iota
	bigCtxExt
	bigQuery
	bigClaims
	bigScopes
)

// sizedVal returns v, unless a bounded evaluation must not see it.
func (a *condActivation) sizedVal(bit uint8, v ref.Val, big func() bool) any {
	if a.sized&bit == 0 {
		a.sized |= bit
		if big() {
			a.big |= bit
		}
	}
	if a.bounded && a.big&bit != 0 {
		a.over = true
		return errOversize
	}
	return v
}

// str returns s as a CEL string, unless a bounded evaluation must not see
// it.
func (a *condActivation) str(s string) any {
	if a.bounded && len(s) > maxConditionValueSize {
		a.over = true
		return errOversize
	}
	return types.String(s)
}

// ResolveName implements interpreter.Activation.
func (a *condActivation) ResolveName(name string) (any, bool) {
	r := &a.req
	if a.seen != nil {
		a.seen(name)
	}
	switch name {
	case "request.method":
		return a.str(r.Method), true
	case "request.host":
		return a.str(r.Host), true
	case "request.path":
		return a.str(r.Path), true
	case "request.scheme":
		return a.str(r.Scheme), true
	case "request.headers":
		if a.built&bigHeaders == 0 {
			a.headers.m, a.built = r.Headers, a.built|bigHeaders
		}
		return a.sizedVal(bigHeaders, &a.headers, func() bool { return bigStringMap(r.Headers, maxConditionMapEntries) }), true
	case "request.context_extensions":
		if a.built&bigCtxExt == 0 {
			a.ctxExt.m, a.built = r.ContextExtensions, a.built|bigCtxExt
		}
		return a.sizedVal(bigCtxExt, &a.ctxExt, func() bool { return bigStringMap(r.ContextExtensions, maxConditionMapEntries) }), true
	case "request.query":
		if a.built&bigQuery == 0 {
			a.query.m, a.built = parseConditionQuery(r.Query), a.built|bigQuery
		}
		// Each key, value and the number of parameters is at most the
		// length of the query.
		return a.sizedVal(bigQuery, &a.query, func() bool { return len(r.Query) > maxConditionValueSize }), true
	case "request.client_address":
		ip, ok := ClientAddress(r, a.hops)
		if !ok {
			return types.String(""), true
		}
		return types.String(ip.String()), true
	case "request.source_principal":
		return a.str(r.SourcePrincipal), true
	}
	id := a.id
	if id == nil {
		return nil, false // not declared where there is no principal
	}
	switch name {
	case "principal.subject":
		return a.str(id.Subject), true
	case "principal.issuer":
		return a.str(id.Issuer), true
	case "principal.authenticator":
		return a.str(id.Authenticator), true
	case "principal.method":
		return a.str(id.Method), true
	case "principal.app_id":
		return a.str(id.AppID), true
	case "principal.plan":
		return a.str(id.Plan), true
	case "principal.scopes":
		if a.scopes == nil {
			a.scopes = types.NewStringList(types.DefaultTypeAdapter, id.Scopes)
		}
		return a.sizedVal(bigScopes, a.scopes, func() bool { return bigValue(id.Scopes, 1) }), true
	case "principal.claims":
		if a.built&bigClaims == 0 {
			a.claims, a.built = claimMap{m: id.Claims}, a.built|bigClaims
		}
		return a.sizedVal(bigClaims, &a.claims, func() bool { return bigValue(id.Claims, 0) }), true
	}
	return nil, false
}

// bigStringMap reports a map beyond entries entries or with a key or
// value beyond maxConditionValueSize.
func bigStringMap(m map[string]string, entries int) bool {
	if len(m) > entries {
		return true
	}
	for k, v := range m {
		if len(k) > maxConditionValueSize || len(v) > maxConditionValueSize {
			return true
		}
	}
	return false
}

// maxClaimDepth bounds the walk of bigValue; deeper claims count as big.
const maxClaimDepth = 32

// bigValue reports a claim value with a string, list or map beyond
// maxConditionValueSize (bytes, entries) anywhere in it.
func bigValue(v any, depth int) bool {
	if depth > maxClaimDepth {
		return true
	}
	switch x := v.(type) {
	case string:
		return len(x) > maxConditionValueSize
	case []string:
		if len(x) > maxConditionValueSize {
			return true
		}
		for _, e := range x {
			if len(e) > maxConditionValueSize {
				return true
			}
		}
	case []any:
		if len(x) > maxConditionValueSize {
			return true
		}
		for _, e := range x {
			if bigValue(e, depth+1) {
				return true
			}
		}
	case map[string]any:
		if len(x) > maxConditionValueSize {
			return true
		}
		for k, e := range x {
			if len(k) > maxConditionValueSize || bigValue(e, depth+1) {
				return true
			}
		}
	}
	return false
}

// Parent implements interpreter.Activation.
func (a *condActivation) Parent() interpreter.Activation { return nil }

// parseConditionQuery decodes a raw query string into a map: '+' is a
// space, percent escapes are decoded (queryUnescape: a bad escape keeps the
// raw text, so it cannot hide a parameter), and a parameter given more than once has
// its values joined by commas, as Envoy joins repeated headers; a
// condition then sees every value, not whichever one an upstream picks.
func parseConditionQuery(q string) map[string]string {
	if q == "" {
		return nil
	}
	m := make(map[string]string, strings.Count(q, "&")+1)
	for part := range strings.SplitSeq(q, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, v = queryUnescape(k), queryUnescape(v)
		if old, ok := m[k]; ok {
			v = old + "," + v
		}
		m[k] = v
	}
	return m
}
