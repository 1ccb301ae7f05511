package expr

import (
	"net/netip"
	"regexp/syntax"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"

	"github.com/moat-gateway/moat/internal/gateway"
)

// The environments (with and without request.body, with and without
// object_id) are built once, on first use; a cel.Env is safe for
// concurrent use.
var envs [4]struct {
	once sync.Once
	env  *cel.Env
	err  error
}

func environment(opts Options) (*cel.Env, error) {
	i := 0
	if opts.Body {
		i = 1
	}
	if opts.ObjectID {
		i += 2
	}
	e := &envs[i]
	e.once.Do(func() { e.env, e.err = newEnv(requestDefs[i%2], opts.ObjectID) })
	return e.env, e.err
}

func newEnv(request *objectDef, objectID bool) (*cel.Env, error) {
	var extra []cel.EnvOption
	if objectID {
		extra = append(extra, cel.Variable(varObjectID, cel.StringType))
	}
	return cel.NewEnv(append(extra,
		cel.CustomTypeAdapter(celAdapter),
		cel.CustomTypeProvider(&provider{Registry: baseRegistry, request: request}),
		cel.Variable("principal", principalType),
		cel.Variable("request", requestType),
		cel.Variable("route", routeType),
		ext.Strings(),
		ext.Sets(),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		cel.ExtendedValidations(),
		cel.ASTValidators(ipLiteralValidator{}, regexLiteralValidator{}),
		cel.ParserExpressionSizeLimit(MaxSourceLength),
		cel.Function(fnIPIn,
			cel.Overload("ip_in_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(ipIn)),
			cel.Overload("ip_in_string_list", []*cel.Type{cel.StringType, cel.ListType(cel.StringType)}, cel.BoolType,
				cel.BinaryBinding(ipIn)),
		),
	)...)
}

// activation resolves the three variables for one evaluation. It holds one
// pointer, so passing it as an interpreter.Activation does not allocate.
type activation struct{ ex *gateway.Exchange }

// ResolveName implements interpreter.Activation.
func (a activation) ResolveName(name string) (any, bool) {
	switch name {
	case "principal":
		if a.ex.Principal == nil {
			// CEL compares with null by identity: principal == null holds,
			// and the field getters see no principal.
			return types.NullValue, true
		}
		return principalVal{a.ex.Principal}, true
	case "request":
		return requestVal{a.ex}, true
	case "route":
		return routeVal{a.ex}, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a activation) Parent() interpreter.Activation { return nil }

const varObjectID = "object_id"

// objectActivation adds object_id to the three variables.
type objectActivation struct {
	activation
	id string
}

// ResolveName implements interpreter.Activation.
func (a *objectActivation) ResolveName(name string) (any, bool) {
	if name == varObjectID {
		return types.String(a.id), true
	}
	return a.activation.ResolveName(name)
}

const fnIPIn = "ip_in"

// ipIn reports whether the address lhs is inside the prefix rhs, or inside
// one of the prefixes of the list rhs. An address that does not parse is in
// no prefix; a prefix that does not parse is an error (literal prefixes are
// refused at compile time by ipLiteralValidator). IPv4-mapped IPv6
// addresses are compared as IPv4.
func ipIn(lhs, rhs ref.Val) ref.Val {
	s, ok := lhs.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(lhs)
	}
	addr, err := netip.ParseAddr(string(s))
	if err != nil {
		return types.False
	}
	addr = addr.Unmap()
	switch r := rhs.(type) {
	case types.String:
		return prefixContains(string(r), addr)
	case traits.Lister:
		it := r.Iterator()
		for it.HasNext() == types.True {
			ps, ok := it.Next().(types.String)
			if !ok {
				return types.NewErr("ip_in: prefix list holds a non-string")
			}
			if v := prefixContains(string(ps), addr); v != types.False {
				return v
			}
		}
		return types.False
	}
	return types.MaybeNoSuchOverloadErr(rhs)
}

func prefixContains(s string, addr netip.Addr) ref.Val {
	p, err := parsePrefix(s)
	if err != nil {
		// The prefix may come from the request: not echoed into logs.
		return types.NewErr("ip_in: a prefix is not an address or CIDR prefix")
	}
	return types.Bool(p.Contains(addr))
}

// parsePrefix accepts a CIDR prefix or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ipLiteralValidator refuses ip_in calls whose prefix argument is a literal
// that does not parse, so a typo fails at configuration load.
type ipLiteralValidator struct{}

func (ipLiteralValidator) Name() string { return "moat.ip_in_literals" }

func (ipLiteralValidator) Validate(_ *cel.Env, _ cel.ValidatorConfig, a *ast.AST, iss *cel.Issues) {
	root := ast.NavigateAST(a)
	for _, call := range ast.MatchDescendants(root, ast.FunctionMatcher(fnIPIn)) {
		args := call.AsCall().Args()
		if len(args) != 2 {
			continue
		}
		var lits []ast.Expr
		switch arg := args[1]; arg.Kind() {
		case ast.LiteralKind:
			lits = append(lits, arg)
		case ast.ListKind:
			lits = append(lits, arg.AsList().Elements()...)
		}
		for _, l := range lits {
			if l.Kind() != ast.LiteralKind {
				continue
			}
			s, ok := l.AsLiteral().(types.String)
			if !ok {
				continue
			}
			if _, err := parsePrefix(string(s)); err != nil {
				iss.ReportErrorAtID(l.ID(), "ip_in: %q is not an address or CIDR prefix", string(s))
			}
		}
	}
}

// MaxRegexProgramSize bounds the compiled size (RE2 instructions) of a
// matches() pattern; RE2 runs in time proportional to the input times
// this size.
const MaxRegexProgramSize = 1000

// regexLiteralValidator requires matches() patterns to be literals, so a
// client cannot supply a pattern and every pattern is checked at load.
type regexLiteralValidator struct{}

func (regexLiteralValidator) Name() string { return "moat.regex_literals" }

func (regexLiteralValidator) Validate(_ *cel.Env, _ cel.ValidatorConfig, a *ast.AST, iss *cel.Issues) {
	root := ast.NavigateAST(a)
	for _, call := range ast.MatchDescendants(root, ast.FunctionMatcher(overloads.Matches)) {
		c := call.AsCall()
		args := c.Args()
		i := 1
		if c.IsMemberFunction() {
			i = 0
		}
		if len(args) <= i {
			continue
		}
		if args[i].Kind() != ast.LiteralKind {
			iss.ReportErrorAtID(args[i].ID(), "matches: the pattern must be a string literal")
			continue
		}
		pattern, ok := args[i].AsLiteral().Value().(string)
		if !ok {
			continue
		}
		// cel-go's own size validator compiles without simplifying and
		// panics on counted repetitions; this is what regexp.Compile does.
		re, err := syntax.Parse(pattern, syntax.Perl)
		if err != nil {
			continue // reported by cel.ValidateRegexLiterals
		}
		prog, err := syntax.Compile(re.Simplify())
		if err != nil {
			continue
		}
		if n := len(prog.Inst); n > MaxRegexProgramSize {
			iss.ReportErrorAtID(args[i].ID(), "matches: the pattern compiles to %d instructions, over the limit of %d", n, MaxRegexProgramSize)
		}
	}
}

// Nominal input sizes for the compile-time cost estimate. Independent
// per-value bounds cannot say that a body's strings and its arrays share
// one max_body, so true maxima would refuse any loop over the body; these
// nominal sizes tell linear expressions (accepted) from quadratic ones
// (refused). The runtime CostLimit bounds every evaluation whatever its
// input.
const (
	nominalStringSize = 8 << 10 // characters in any string from the request or principal
	nominalEntries    = 1000    // elements of any list, entries of any map
)

// estimator gives the checker's cost estimate the nominal size of every
// value an expression reads.
type estimator struct{}

// EstimateSize implements checker.CostEstimator.
func (estimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if t := n.Type(); t != nil {
		switch t.Kind() {
		case types.ListKind, types.MapKind:
			return &checker.SizeEstimate{Min: 0, Max: nominalEntries}
		}
	}
	// Strings, bytes, dyn values (body, claims) and anything else CEL
	// cannot size.
	return &checker.SizeEstimate{Min: 0, Max: nominalStringSize}
}

// EstimateCallCost implements checker.CostEstimator: ip_in costs one unit
// per prefix.
func (estimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if function != fnIPIn || len(args) != 2 {
		return nil
	}
	if overloadID == "ip_in_string_list" {
		max := uint64(nominalEntries)
		if sz := args[1].ComputedSize(); sz != nil {
			max = sz.Max
		}
		return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: 1 + max}}
	}
	return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: 1}}
}
