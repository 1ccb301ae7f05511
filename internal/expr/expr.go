// Package expr compiles and evaluates CEL expressions over a request: the one
// expression language moat uses wherever configuration computes something
// from a request (rate-limit keys, authorization policies, ownership rules).
//
// An expression sees three variables:
//
//	principal  who made the request (see below); unauthenticated requests have an absent principal
//	request    method, path, host, params, query, headers, client_ip and, when enabled, body
//	route      name, template
//
// principal fields: authenticated (bool), subject, authenticator, kind,
// key_id, plan (string), roles, scopes (list(string)), claims (map(string,
// dyn)). On a request without a principal (a public route), principal.
// authenticated is false, has(principal.subject) and every other has() is
// false, principal == null is true, and reading any other field is an
// evaluation error, so a policy fails closed instead of comparing against
// empty strings. Write principal.authenticated ? principal.subject :
// request.client_ip to branch.
//
// request fields: method (upper case, as sent), path (the decoded URL path the
// router matched), host (lower case, without port or trailing dot), params
// (map(string,string): the route's path parameters), query
// (map(string,string)), headers (map(string,string), lower-case names), client_ip (string; "" when
// unknown), body (dyn: the parsed JSON document; declared only when the
// program is compiled with Options.Body). query and headers map a name to
// its value; a name sent several times maps to the values joined with ", ",
// so a comparison against one expected value fails when a client repeats a
// parameter or header (parameter pollution is refused, not resolved). Header
// names are looked up case-insensitively; iteration yields lower-case names.
// Missing keys are evaluation errors: use has(request.headers.x) or "x-a" in
// request.headers, or the optional syntax request.headers[?"x-a"].orValue("").
// JSON numbers in the body and in claims are int when integral and in the
// int64 range, double otherwise.
//
// Programs compiled with Options.ObjectID also see object_id (string), the
// object identifier an ownership rule checks; evaluate them with
// EvalBoolObject.
//
// Besides the CEL standard library, expressions may use the ext.Strings and
// ext.Sets libraries, optional values, and ip_in(ip, cidr) / ip_in(ip,
// [cidr, ...]) which reports whether the address ip is inside a prefix
// (false for an ip that does not parse; literal prefixes are checked at
// compile time). matches() patterns must be literals of at most
// MaxRegexProgramSize RE2 instructions.
//
// Programs are built once (Compile) and are immutable and safe for
// concurrent use. Evaluation reads the Exchange lazily: nothing is computed
// for variables or fields an expression does not use, and header or query
// lookups by a constant name do not build maps.
package expr

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/moat-gateway/moat/internal/gateway"
)

// OutputType is the type an expression must produce.
type OutputType uint8

// The output types. An expression whose checked type is dyn is accepted for
// either; its value is then checked at each evaluation.
const (
	String OutputType = iota + 1
	Bool
)

func (o OutputType) String() string {
	switch o {
	case String:
		return "string"
	case Bool:
		return "bool"
	}
	return fmt.Sprintf("OutputType(%d)", uint8(o))
}

// Defaults and bounds.
const (
	// DefaultCostLimit is the runtime cost limit when Options.CostLimit is 0.
	// A CEL cost unit is roughly one simple operation; string and list
	// functions cost per 10 bytes or per element. Typical policies cost
	// under 50.
	DefaultCostLimit uint64 = 10_000

	// EstimateFactor relates the compile-time bound to the runtime limit: an
	// expression whose estimated worst-case cost exceeds EstimateFactor ×
	// CostLimit is refused at compile time. The estimate assumes nominal
	// input sizes (every string 8 KiB, every list or map 1,000 entries), so
	// it accepts expressions linear in the size of the request and refuses
	// quadratic ones (a loop inside a loop over request data); the runtime
	// CostLimit bounds every evaluation whatever the input.
	EstimateFactor uint64 = 100

	// MaxSourceLength bounds the length of an expression, in characters.
	MaxSourceLength = 8192
)

// Options configure Compile.
type Options struct {
	// Body declares request.body (the parsed JSON body). Without it an
	// expression that reads request.body does not compile.
	Body bool
	// CostLimit is the runtime cost limit; 0 means DefaultCostLimit.
	CostLimit uint64
	// ObjectID declares object_id (string): the object identifier an
	// ownership rule checks. Evaluate such programs with EvalBoolObject.
	ObjectID bool
}

// Program is a compiled expression. It is immutable and safe for concurrent
// use.
type Program struct {
	src     string
	out     OutputType
	prg     cel.Program
	limit   uint64
	estMax  uint64
	tracked bool
}

// Source returns the expression text.
func (p *Program) Source() string { return p.src }

// CostLimit returns the runtime cost limit the program runs with.
func (p *Program) CostLimit() uint64 { return p.limit }

// CostTracked reports whether evaluations count their cost against
// CostLimit (see Compile).
func (p *Program) CostTracked() bool { return p.tracked }

// EstimatedCost returns the compile-time worst-case cost estimate.
func (p *Program) EstimatedCost() uint64 { return p.estMax }

// ErrCostLimit is wrapped by evaluation errors caused by the runtime cost
// limit.
var ErrCostLimit = errors.New("cost limit exceeded")

// Compile parses and type-checks src, checks that it produces out, estimates
// its worst-case cost and builds the program. Errors name the position of
// each problem as line:column within src.
//
// Cost: an expression whose estimated worst-case cost (at nominal input
// sizes, see EstimateFactor) exceeds EstimateFactor × CostLimit is refused.
// An expression with a loop (all, exists, exists_one, map, filter, sets.*,
// matches)
// or whose estimate exceeds CostLimit is evaluated with runtime cost
// tracking and stops with ErrCostLimit past CostLimit; a loop-free
// expression within the limit is evaluated without tracking, since its
// work is linear in the size of the request.
func Compile(src string, out OutputType, opts Options) (p *Program, err error) {
	// A configuration must never crash the process that loads it.
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("compiling expression: internal error: %v", r)
		}
	}()
	if out != String && out != Bool {
		return nil, fmt.Errorf("compiling expression: unknown output type %d", out)
	}
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}
	if n := len([]rune(src)); n > MaxSourceLength {
		return nil, fmt.Errorf("expression is %d characters long, over the limit of %d", n, MaxSourceLength)
	}
	env, err := environment(opts)
	if err != nil {
		return nil, fmt.Errorf("building the expression environment: %w", err)
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, issuesError(iss)
	}
	switch t := ast.OutputType(); {
	case t.IsExactType(types.DynType):
	case out == String && t.IsExactType(types.StringType):
	case out == Bool && t.IsExactType(types.BoolType):
	default:
		return nil, fmt.Errorf("expression produces %s, want %s", t, out)
	}

	limit := opts.CostLimit
	if limit == 0 {
		limit = DefaultCostLimit
	}
	est, err := env.EstimateCost(ast, estimator{})
	if err != nil {
		return nil, fmt.Errorf("estimating the cost: %w", err)
	}
	bound := limit * EstimateFactor
	if limit > ^uint64(0)/EstimateFactor {
		bound = ^uint64(0)
	}
	if est.Max > bound {
		return nil, fmt.Errorf("worst-case cost %s is over %d (%d × cost limit %d): the expression grows faster than the size of the request; avoid nested loops over request data",
			costString(est.Max), bound, EstimateFactor, limit)
	}

	// Runtime cost tracking roughly triples the evaluation time of a small
	// expression, so it is enabled for every expression whose cost is not
	// bounded at compile time: one with a loop (a comprehension macro such
	// as all/exists/map/filter, or a sets.* function), or whose estimate is
	// over the limit. A loop-free expression runs in time linear in the
	// size of the request (each operator and function touches its operands
	// once) and its estimate at nominal sizes is within the limit.
	tracked := hasLoops(ast.NativeRep()) || est.Max > limit
	progOpts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if tracked {
		progOpts = append(progOpts, cel.CostLimit(limit))
	}
	prg, err := env.Program(ast, progOpts...)
	if err != nil {
		return nil, fmt.Errorf("building the program: %w", err)
	}
	return &Program{src: src, out: out, prg: prg, limit: limit, estMax: est.Max, tracked: tracked}, nil
}

// hasLoops reports whether the expression iterates: a comprehension, a
// function that compares lists element by element pairwise, or a regular
// expression match (time proportional to input times pattern size).
func hasLoops(a *celast.AST) bool {
	root := celast.NavigateAST(a)
	loops := celast.MatchDescendants(root, func(e celast.NavigableExpr) bool {
		switch e.Kind() {
		case celast.ComprehensionKind:
			return true
		case celast.CallKind:
			fn := e.AsCall().FunctionName()
			return strings.HasPrefix(fn, "sets.") || fn == overloads.Matches
		}
		return false
	})
	return len(loops) > 0
}

func costString(c uint64) string {
	if c == ^uint64(0) {
		return "unbounded"
	}
	return fmt.Sprint(c)
}

// issuesError formats CEL issues as "line:col: message", one per problem.
func issuesError(iss *cel.Issues) error {
	errs := iss.Errors()
	if len(errs) == 0 {
		return iss.Err()
	}
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, fmt.Sprintf("%d:%d: %s", e.Location.Line(), e.Location.Column()+1, e.Message))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// EvalString evaluates a program compiled for String. Errors: a missing map
// key or field, a type mismatch, the cost limit (wrapping ErrCostLimit), or
// an error the exchange returned while reading the body (a *gateway.Reject,
// which errors.As finds).
func (p *Program) EvalString(ex *gateway.Exchange) (string, error) {
	v, err := p.eval(ex)
	if err != nil {
		return "", err
	}
	s, ok := v.(types.String)
	if !ok {
		return "", fmt.Errorf("expression produced %s, want string", v.Type())
	}
	return string(s), nil
}

// EvalBool evaluates a program compiled for Bool; see EvalString for errors.
func (p *Program) EvalBool(ex *gateway.Exchange) (bool, error) {
	v, err := p.eval(ex)
	if err != nil {
		return false, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("expression produced %s, want bool", v.Type())
	}
	return bool(b), nil
}

// EvalBoolObject evaluates a program compiled for Bool with
// Options.ObjectID, with object_id bound to id; see EvalString for errors.
func (p *Program) EvalBoolObject(ex *gateway.Exchange, id string) (bool, error) {
	if ex == nil {
		return false, errors.New("evaluating expression: nil exchange")
	}
	v, err := p.run(&objectActivation{activation{ex}, id})
	if err != nil {
		return false, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("expression produced %s, want bool", v.Type())
	}
	return bool(b), nil
}

func (p *Program) eval(ex *gateway.Exchange) (ref.Val, error) {
	if ex == nil {
		return nil, errors.New("evaluating expression: nil exchange")
	}
	return p.run(activation{ex: ex})
}

func (p *Program) run(act interpreter.Activation) (ref.Val, error) {
	v, _, err := p.prg.Eval(act)
	if err != nil {
		return nil, evalError(err)
	}
	return v, nil
}

// evalError keeps the cause of an evaluation error reachable with errors.As
// (a body *gateway.Reject) and marks cost-limit errors.
func evalError(err error) error {
	var cancelled interpreter.EvalCancelledError
	if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded {
		return fmt.Errorf("evaluating expression: %w", ErrCostLimit)
	}
	return fmt.Errorf("evaluating expression: %w", err)
}

var _ checker.CostEstimator = estimator{}
