package openapi

import (
	"encoding/json"
	"strconv"
	"strings"
)

// KeywordNumberSize is the keyword of the violation recorded for a number
// too costly to validate (costlyNumber), in place of the schema's verdict.
const KeywordNumberSize = "number_size"

// maxNumberText bounds the number literals validated exactly; see
// costlyNumber.
const maxNumberText = 400

// costlyNumber reports whether the JSON number literal n is too costly to
// evaluate exactly: more than maxNumberText bytes, or an exponent beyond
// ±999. The schema validator turns numbers into big.Rat values: 1e999999
// takes tens of milliseconds and a million-digit integer over a second,
// so a small body of such numbers could hold a core for minutes. Within
// these bounds a literal costs a few microseconds, and every float64
// (exponents up to ±308) passes. internal/exposure/schema applies the same
// bound to responses.
func costlyNumber(n json.Number) bool {
	s := string(n)
	if len(s) > maxNumberText {
		return true
	}
	e := strings.IndexAny(s, "eE")
	if e < 0 {
		return false
	}
	exp := strings.TrimLeft(strings.TrimLeft(s[e+1:], "+-"), "0")
	return len(exp) > 3
}

// findCostlyNumber returns the JSON pointer of the first costly number in
// v, a value decoded with json.Number, and true; "" and false when there is
// none. It walks at most the values v holds, allocating only for the
// pointer it returns.
func findCostlyNumber(v any) (string, bool) {
	switch t := v.(type) {
	case json.Number:
		return "", costlyNumber(t)
	case map[string]any:
		for k, e := range t {
			if p, ok := findCostlyNumber(e); ok {
				return "/" + escapeToken(clip(k)) + p, true
			}
		}
	case []any:
		for i, e := range t {
			if p, ok := findCostlyNumber(e); ok {
				return "/" + strconv.Itoa(i) + p, true
			}
		}
	}
	return "", false
}
