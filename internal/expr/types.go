package expr

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	"github.com/moat-gateway/moat/internal/gateway"
)

// The object types of the three variables. Their fields are resolved by
// the provider below straight from the Exchange: the interpreter calls a
// field's getter only when an expression reads that field.
const (
	principalTypeName = "moat.Principal"
	requestTypeName   = "moat.Request"
	routeTypeName     = "moat.Route"
)

var (
	principalType  = types.NewObjectType(principalTypeName)
	requestType    = types.NewObjectType(requestTypeName)
	routeType      = types.NewObjectType(routeTypeName)
	stringListType = types.NewListType(types.StringType)
	stringMapType  = types.NewMapType(types.StringType, types.StringType)
	dynMapType     = types.NewMapType(types.StringType, types.DynType)
)

// errNoPrincipal is the evaluation error for reading a principal field on an
// unauthenticated request.
var errNoPrincipal = errors.New("no principal: the request is not authenticated (test principal.authenticated first)")

// objectDef describes one object type: its fields with their getters.
type objectDef struct {
	typ    *types.Type
	fields map[string]*types.FieldType
	names  []string
}

func newObjectDef(typ *types.Type) *objectDef {
	return &objectDef{typ: typ, fields: map[string]*types.FieldType{}}
}

func (d *objectDef) add(name string, t *types.Type, get func(any) (any, error), isSet func(any) bool) {
	d.fields[name] = &types.FieldType{Type: t, GetFrom: get, IsSet: isSet}
	d.names = append(d.names, name)
}

// get resolves a field by a runtime key, for dynamic access (dyn(principal).x).
func (d *objectDef) get(native any, key ref.Val) ref.Val {
	name, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key)
	}
	f, ok := d.fields[string(name)]
	if !ok {
		return types.NewErr("no such field '%s'", string(name))
	}
	v, err := f.GetFrom(native)
	if err != nil {
		return types.WrapErr(err)
	}
	return celAdapter.NativeToValue(v)
}

func (d *objectDef) isSet(native any, key ref.Val) ref.Val {
	name, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key)
	}
	f, ok := d.fields[string(name)]
	if !ok {
		return types.NewErr("no such field '%s'", string(name))
	}
	return types.Bool(f.IsSet(native))
}

func principalOf(v any) *gateway.Principal { p, _ := v.(*gateway.Principal); return p }
func exchangeOf(v any) *gateway.Exchange   { ex, _ := v.(*gateway.Exchange); return ex }

// principalString declares a string field of the principal.
func principalString(d *objectDef, name string, f func(*gateway.Principal) string) {
	d.add(name, types.StringType,
		func(v any) (any, error) {
			p := principalOf(v)
			if p == nil {
				return nil, errNoPrincipal
			}
			return types.String(f(p)), nil
		},
		func(v any) bool { p := principalOf(v); return p != nil && f(p) != "" })
}

func principalList[T listSource](d *objectDef, name string, wrap func(*gateway.Principal) stringList[T]) {
	d.add(name, stringListType,
		func(v any) (any, error) {
			p := principalOf(v)
			if p == nil {
				return nil, errNoPrincipal
			}
			return wrap(p), nil
		},
		func(v any) bool { p := principalOf(v); return p != nil && len(wrap(p).src.items()) > 0 })
}

var principalDef = func() *objectDef {
	d := newObjectDef(principalType)
	d.add("authenticated", types.BoolType,
		func(v any) (any, error) { return types.Bool(principalOf(v) != nil), nil },
		func(any) bool { return true })
	principalString(d, "subject", func(p *gateway.Principal) string { return p.Subject })
	principalString(d, "authenticator", func(p *gateway.Principal) string { return p.Authenticator })
	principalString(d, "kind", func(p *gateway.Principal) string { return p.Kind })
	principalString(d, "key_id", func(p *gateway.Principal) string { return p.KeyID })
	principalString(d, "plan", func(p *gateway.Principal) string { return p.Plan })
	principalList(d, "roles", func(p *gateway.Principal) stringList[roles] { return stringList[roles]{roles{p}} })
	principalList(d, "scopes", func(p *gateway.Principal) stringList[scopes] { return stringList[scopes]{scopes{p}} })
	d.add("claims", dynMapType,
		func(v any) (any, error) {
			p := principalOf(v)
			if p == nil {
				return nil, errNoPrincipal
			}
			return types.NewStringInterfaceMap(celAdapter, p.Claims), nil
		},
		func(v any) bool { p := principalOf(v); return p != nil && len(p.Claims) > 0 })
	return d
}()

// exchangeString declares a string field computed from the exchange; a
// field is "set" when it is not empty.
func exchangeString(d *objectDef, name string, f func(*gateway.Exchange) string) {
	d.add(name, types.StringType,
		func(v any) (any, error) {
			ex := exchangeOf(v)
			if ex == nil {
				return nil, errors.New("no exchange")
			}
			return types.String(f(ex)), nil
		},
		func(v any) bool { ex := exchangeOf(v); return ex != nil && f(ex) != "" })
}

// requestDefs[0] is the request type without body, [1] with it.
var requestDefs = [2]*objectDef{newRequestDef(false), newRequestDef(true)}

func newRequestDef(body bool) *objectDef {
	d := newObjectDef(requestType)
	exchangeString(d, "method", func(ex *gateway.Exchange) string { return ex.Request.Method })
	exchangeString(d, "path", func(ex *gateway.Exchange) string { return ex.Request.URL.Path })
	exchangeString(d, "host", func(ex *gateway.Exchange) string { return normalizeHost(ex.Request.Host) })
	exchangeString(d, "client_ip", func(ex *gateway.Exchange) string {
		if !ex.ClientIP.IsValid() {
			return ""
		}
		return ex.ClientIP.String()
	})
	d.add("params", stringMapType,
		func(v any) (any, error) { return newParamMap(exchangeOf(v)), nil },
		func(v any) bool { ex := exchangeOf(v); return ex != nil && len(ex.Params) > 0 })
	d.add("query", stringMapType,
		func(v any) (any, error) { return newQueryMap(exchangeOf(v)), nil },
		func(v any) bool { ex := exchangeOf(v); return ex != nil && ex.Request.URL.RawQuery != "" })
	d.add("headers", stringMapType,
		func(v any) (any, error) { return newHeaderMap(exchangeOf(v)), nil },
		func(v any) bool { ex := exchangeOf(v); return ex != nil && len(ex.Request.Header) > 0 })
	if body {
		d.add("body", types.DynType,
			func(v any) (any, error) {
				ex := exchangeOf(v)
				if ex == nil {
					return nil, errors.New("no exchange")
				}
				doc, err := ex.JSONBody()
				if err != nil {
					return nil, err
				}
				return celAdapter.NativeToValue(doc), nil
			},
			func(v any) bool {
				ex := exchangeOf(v)
				if ex == nil {
					return false
				}
				doc, err := ex.JSONBody()
				// An unreadable body counts as set, so that reading it
				// reports the error instead of has() hiding it.
				return err != nil || doc != nil
			})
	}
	return d
}

var routeDef = func() *objectDef {
	d := newObjectDef(routeType)
	exchangeString(d, "name", func(ex *gateway.Exchange) string {
		if ex.Route == nil {
			return ""
		}
		return ex.Route.Name
	})
	exchangeString(d, "template", func(ex *gateway.Exchange) string {
		if ex.Route == nil {
			return ""
		}
		return ex.Route.Template
	})
	return d
}()

// Object values. Each wraps one pointer, so storing it in an interface does
// not allocate.

type principalVal struct{ p *gateway.Principal }
type requestVal struct {
	ex *gateway.Exchange
}
type routeVal struct{ ex *gateway.Exchange }

var (
	exchangePtrType  = reflect.TypeOf((*gateway.Exchange)(nil))
	principalPtrType = reflect.TypeOf((*gateway.Principal)(nil))
)

func (v principalVal) ConvertToNative(t reflect.Type) (any, error) {
	if t == principalPtrType {
		return v.p, nil
	}
	return nil, fmt.Errorf("type conversion error from %s to %v", principalTypeName, t)
}
func (v principalVal) ConvertToType(t ref.Type) ref.Val { return convertObject(principalType, t) }
func (v principalVal) Equal(o ref.Val) ref.Val {
	r, ok := o.(principalVal)
	return types.Bool(ok && r.p == v.p)
}
func (v principalVal) Type() ref.Type              { return principalType }
func (v principalVal) Value() any                  { return v.p }
func (v principalVal) Get(key ref.Val) ref.Val     { return principalDef.get(v.p, key) }
func (v principalVal) IsSet(field ref.Val) ref.Val { return principalDef.isSet(v.p, field) }
func (v requestVal) ConvertToNative(t reflect.Type) (any, error) {
	if t == exchangePtrType {
		return v.ex, nil
	}
	return nil, fmt.Errorf("type conversion error from %s to %v", requestTypeName, t)
}
func (v requestVal) ConvertToType(t ref.Type) ref.Val { return convertObject(requestType, t) }
func (v requestVal) Equal(o ref.Val) ref.Val {
	r, ok := o.(requestVal)
	return types.Bool(ok && r.ex == v.ex)
}
func (v requestVal) Type() ref.Type { return requestType }
func (v requestVal) Value() any     { return v.ex }

// Dynamic access to request fields uses the definition with body; a
// program compiled without Options.Body cannot name request.body
// statically, and dyn(request).body reads it only through the same lazy,
// size-bounded Exchange.JSONBody, which is refused below.
func (v requestVal) Get(key ref.Val) ref.Val {
	if s, ok := key.(types.String); ok && s == "body" {
		return types.NewErr("request.body is not available: the route does not declare body access")
	}
	return requestDefs[0].get(v.ex, key)
}
func (v requestVal) IsSet(field ref.Val) ref.Val {
	if s, ok := field.(types.String); ok && s == "body" {
		return types.False
	}
	return requestDefs[0].isSet(v.ex, field)
}

func (v routeVal) ConvertToNative(t reflect.Type) (any, error) {
	if t == exchangePtrType && v.ex != nil {
		return v.ex, nil
	}
	return nil, fmt.Errorf("type conversion error from %s to %v", routeTypeName, t)
}
func (v routeVal) ConvertToType(t ref.Type) ref.Val { return convertObject(routeType, t) }
func (v routeVal) Equal(o ref.Val) ref.Val {
	r, ok := o.(routeVal)
	return types.Bool(ok && r.ex == v.ex)
}
func (v routeVal) Type() ref.Type              { return routeType }
func (v routeVal) Value() any                  { return v.ex }
func (v routeVal) Get(key ref.Val) ref.Val     { return routeDef.get(v.ex, key) }
func (v routeVal) IsSet(field ref.Val) ref.Val { return routeDef.isSet(v.ex, field) }

func convertObject(self *types.Type, t ref.Type) ref.Val {
	if t == types.TypeType {
		return self
	}
	return types.NewErr("type conversion error from %s to %s", self.TypeName(), t.TypeName())
}

// provider declares the object types on top of the standard registry.
type provider struct {
	*types.Registry
	request *objectDef
}

func (p *provider) def(name string) *objectDef {
	switch name {
	case principalTypeName:
		return principalDef
	case requestTypeName:
		return p.request
	case routeTypeName:
		return routeDef
	}
	return nil
}

// FindStructType implements types.Provider.
func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if d := p.def(name); d != nil {
		return types.NewTypeTypeWithParam(d.typ), true
	}
	return p.Registry.FindStructType(name)
}

// FindStructFieldNames implements types.Provider.
func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if d := p.def(name); d != nil {
		return d.names, true
	}
	return p.Registry.FindStructFieldNames(name)
}

// FindStructFieldType implements types.Provider.
func (p *provider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if d := p.def(name); d != nil {
		f, ok := d.fields[field]
		return f, ok
	}
	return p.Registry.FindStructFieldType(name, field)
}

// NewValue implements types.Provider: the request objects cannot be built
// in an expression.
func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if d := p.def(name); d != nil {
		return types.NewErr("%s cannot be constructed", name)
	}
	return p.Registry.NewValue(name, fields)
}

// adapter converts Go values to CEL values: JSON documents (json.Number as
// int or double), claims, and everything the standard registry knows.
type adapter struct{ base *types.Registry }

var baseRegistry = func() *types.Registry {
	r, err := types.NewRegistry()
	if err != nil {
		panic("expr: building the CEL type registry: " + err.Error())
	}
	return r
}()

var celAdapter types.Adapter = adapter{base: baseRegistry}

// NativeToValue implements types.Adapter.
func (a adapter) NativeToValue(v any) ref.Val {
	switch x := v.(type) {
	case ref.Val:
		return x
	case nil:
		return types.NullValue
	case string:
		return types.String(x)
	case bool:
		return types.Bool(x)
	case json.Number:
		return jsonNumber(x)
	case map[string]any:
		return types.NewStringInterfaceMap(a, x)
	case []any:
		return types.NewDynamicList(a, x)
	case []string:
		return types.NewStringList(a, x)
	case map[string]string:
		return types.NewStringStringMap(a, x)
	}
	return a.base.NativeToValue(v)
}

// jsonNumber is an int when the number is integral and fits int64 (so 7 and
// 7.0 compare equal either way), a double otherwise.
func jsonNumber(n json.Number) ref.Val {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return types.Int(i)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return types.NewErr("invalid JSON number %q", string(n))
	}
	return types.Double(f)
}

var (
	_ ref.Val            = principalVal{}
	_ traits.Indexer     = principalVal{}
	_ traits.FieldTester = principalVal{}
	_ traits.Indexer     = requestVal{}
	_ traits.FieldTester = requestVal{}
	_ traits.Indexer     = routeVal{}
	_ traits.FieldTester = routeVal{}
	_ types.Provider     = (*provider)(nil)
	_ types.Adapter      = adapter{}
)
