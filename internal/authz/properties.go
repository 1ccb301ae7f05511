package authz

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// propertyRules is a compiled config.PropertyRules.
type propertyRules struct {
	rules []propertyRule // read-only first, then write_roles by path
}

type propertyRule struct {
	path  pointer
	roles []string // nil: read-only
}

func newPropertyRules(c *config.PropertyRules) (*propertyRules, error) {
	pr := &propertyRules{}
	var errs []error
	for i, s := range c.ReadOnly {
		p, err := parsePointer(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("properties.read_only[%d]: %w", i, err))
			continue
		}
		pr.rules = append(pr.rules, propertyRule{path: p})
	}
	keys := make([]string, 0, len(c.WriteRoles))
	for k := range c.WriteRoles {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, s := range keys {
		p, err := parsePointer(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("properties.write_roles.%s: %w", s, err))
			continue
		}
		if len(c.WriteRoles[s]) == 0 {
			errs = append(errs, fmt.Errorf("properties.write_roles.%s: lists no role", s))
			continue
		}
		pr.rules = append(pr.rules, propertyRule{path: p, roles: slices.Clone(c.WriteRoles[s])})
	}
	return pr, errors.Join(errs...)
}

// forbids reports whether the rule forbids p to write its property:
// read-only rules always do, write_roles rules when p holds none of the
// roles.
func (r *propertyRule) forbids(p *gateway.Principal) bool {
	return r.roles == nil || !holdsAny(p.Roles, r.roles)
}

func (r *propertyRule) reject(path []string) *gateway.Reject {
	if r.roles == nil {
		return gateway.Rejectf(http.StatusForbidden, ReasonPropertyDenied, "the body sets the read-only property %s", formatPath(path))
	}
	return gateway.Rejectf(http.StatusForbidden, ReasonPropertyDenied, "the body sets %s, which needs one of the roles %s", formatPath(path), strings.Join(r.roles, ", "))
}

const jsonPatchType = "application/json-patch+json"

// check refuses a body that sets a property a rule forbids p to write. A
// request without a body passes. A JSON Patch body (RFC 6902) is checked by
// the paths its operations write; any other body must be JSON (a body that
// is not is refused 400 invalid_json by Exchange.JSONBody), and a property
// is set when it is present, even as null.
func (pr *propertyRules) check(ex *gateway.Exchange, p *gateway.Principal) error {
	active := pr.rules[:0:0]
	for i := range pr.rules {
		if pr.rules[i].forbids(p) {
			active = append(active, pr.rules[i])
		}
	}
	if len(active) == 0 {
		return nil
	}
	doc, err := ex.JSONBody()
	if err != nil {
		return err
	}
	if doc == nil {
		return nil
	}
	if mt, _, _ := mime.ParseMediaType(ex.Request.Header.Get("Content-Type")); mt == jsonPatchType {
		return checkPatch(doc, active)
	}
	for i := range active {
		r := &active[i]
		var found []string
		r.path.walk(doc, func(path []string, _ any) bool {
			found = slices.Clone(path)
			return false
		})
		if found != nil {
			return r.reject(found)
		}
	}
	return nil
}

// checkPatch checks a JSON Patch document: an operation writes its path
// (add, replace, remove, copy, move) and move also removes its from. An
// operation on a protected property or inside it is refused; one on an
// ancestor of it is refused when its value sets the property (add,
// replace) or when its value cannot be seen (copy, move from elsewhere in
// the stored document). A document that is not a JSON Patch is refused.
func checkPatch(doc any, rules []propertyRule) error {
	ops, ok := doc.([]any)
	if !ok {
		return gateway.Rejectf(http.StatusForbidden, ReasonPropertyDenied, "the %s body is not an array of operations", jsonPatchType)
	}
	for n, o := range ops {
		op, ok := o.(map[string]any)
		if !ok {
			return gateway.Rejectf(http.StatusForbidden, ReasonPropertyDenied, "JSON Patch operation %d is not an object", n)
		}
		name, _ := op["op"].(string)
		pathStr, ok := op["path"].(string)
		if !ok {
			return gateway.Rejectf(http.StatusForbidden, ReasonPropertyDenied, "JSON Patch operation %d has no path", n)
		}
		path, err := parseConcrete(pathStr)
		if err != nil {
			return &gateway.Reject{Status: http.StatusForbidden, ReasonID: ReasonPropertyDenied, Detail: fmt.Sprintf("JSON Patch operation %d", n), Err: err}
		}
		value, hasValue := op["value"]
		var writes [][]string
		switch name {
		case "test":
			continue
		case "add", "replace", "remove", "copy":
			writes = append(writes, path)
		case "move":
			from, ok := op["from"].(string)
			if !ok {
				return gateway.Rejectf(http.StatusForbidden, ReasonPropertyDenied, "JSON Patch move %d has no from", n)
			}
			fp, err := parseConcrete(from)
			if err != nil {
				return &gateway.Reject{Status: http.StatusForbidden, ReasonID: ReasonPropertyDenied, Detail: fmt.Sprintf("JSON Patch operation %d", n), Err: err}
			}
			writes = append(writes, path, fp)
		default:
			return gateway.Rejectf(http.StatusForbidden, ReasonPropertyDenied, "JSON Patch operation %d has an unknown op", n)
		}
		for wi, w := range writes {
			for i := range rules {
				r := &rules[i]
				switch {
				case len(w) >= len(r.path) && prefixMatches(r.path, w, len(r.path)):
					// On the property or inside it.
					return r.reject(w)
				case len(w) < len(r.path) && prefixMatches(r.path, w, len(w)):
					// On an ancestor: removing it (or moving it away) is
					// not setting the property; writing a value may be.
					if name == "remove" || (name == "move" && wi == 1) {
						continue
					}
					if name == "copy" || name == "move" || !hasValue {
						return r.reject(r.path)
					}
					rest := r.path[len(w):]
					var found []string
					rest.walk(value, func(sub []string, _ any) bool {
						found = append(slices.Clone(w), sub...)
						return false
					})
					if found != nil {
						return r.reject(found)
					}
				}
			}
		}
	}
	return nil
}
