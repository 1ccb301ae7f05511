package openapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/internal/gateway"
)

const tenant = "0b6f7c1e-3d4a-4f5b-9c8d-7e6f5a4b3c2d"

// getItem builds a request to the getItem operation of api31 with its
// required header and cookie. extra holds name, value pairs that replace
// them or add headers: a value of "-" removes the header, and a name given
// twice in a row sends two lines.
func getItem(target string, extra ...string) *gateway.Exchange {
	h := map[string][]string{"X-Tenant": {tenant}, "Cookie": {"theme=dark"}}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "-" {
			delete(h, extra[i])
			continue
		}
		if _, seen := h[extra[i]]; seen && i > 0 && extra[i-2] == extra[i] {
			h[extra[i]] = append(h[extra[i]], extra[i+1])
			continue
		}
		h[extra[i]] = []string{extra[i+1]}
	}
	var pairs []string
	for k, vs := range h {
		for _, v := range vs {
			pairs = append(pairs, k, v)
		}
	}
	return request(http.MethodGet, target, "", pairs...)
}

func TestParameters(t *testing.T) {
	d := testDoc(t, api31)
	tests := []struct {
		desc   string
		target string
		header []string
		reason string
		want   string // one of the violations recorded
	}{
		{desc: "minimal valid request", target: "/v1/items/5"},
		{desc: "every query style valid", target: "/v1/items/5?limit=10&sort=asc&q=abc&tags=a&tags=b&ids=1,2,3&pipe=a|b&space=1%202" +
			"&filter[color]=red&filter[size]=3&offset=0&count=5&flag=true&since=2024-01-02T03:04:05Z&addr=10.0.0.1&empty=&doc=%7B%22a%22%3A1%7D"},
		{desc: "Authorization header parameters are ignored", target: "/v1/items/5", header: []string{"Authorization", "-"}},

		{desc: "path: below minimum", target: "/v1/items/0", reason: ReasonInvalidParameter, want: "path.id: minimum"},
		{desc: "path: above maximum", target: "/v1/items/1000001", reason: ReasonInvalidParameter, want: "path.id: maximum"},
		{desc: "path: not an integer", target: "/v1/items/abc", reason: ReasonInvalidParameter, want: "path.id: type"},
		{desc: "path: a decimal for an integer", target: "/v1/items/1.5", reason: ReasonInvalidParameter, want: "path.id: type"},
		{desc: "path: a huge number stays a string", target: "/v1/items/" + strings.Repeat("9", 120), reason: ReasonInvalidParameter, want: "path.id: type"},

		{desc: "query: above maximum", target: "/v1/items/5?limit=101", reason: ReasonInvalidParameter, want: "query.limit: maximum"},
		{desc: "query: huge exponent refused unevaluated", target: "/v1/items/5?limit=1e999999", reason: ReasonInvalidParameter, want: "query.limit: number_size"},
		{desc: "query: JSON content with a huge exponent", target: "/v1/items/5?doc=%7B%22a%22%3A1e999999%7D", reason: ReasonInvalidParameter, want: "query.doc/a: number_size"},
		{desc: "query: below minimum", target: "/v1/items/5?limit=0", reason: ReasonInvalidParameter, want: "query.limit: minimum"},
		{desc: "query: type", target: "/v1/items/5?limit=ten", reason: ReasonInvalidParameter, want: "query.limit: type"},
		{desc: "query: repeated single value", target: "/v1/items/5?limit=1&limit=100", reason: ReasonInvalidParameter, want: "query.limit: duplicate"},
		{desc: "query: empty value not allowed", target: "/v1/items/5?limit=", reason: ReasonInvalidParameter, want: "query.limit: allowEmptyValue"},
		{desc: "query: enum", target: "/v1/items/5?sort=up", reason: ReasonInvalidParameter, want: "query.sort: enum"},
		{desc: "query: minLength", target: "/v1/items/5?q=a", reason: ReasonInvalidParameter, want: "query.q: minLength"},
		{desc: "query: maxLength", target: "/v1/items/5?q=abcdefghijk", reason: ReasonInvalidParameter, want: "query.q: maxLength"},
		{desc: "query: pattern", target: "/v1/items/5?q=ABC", reason: ReasonInvalidParameter, want: "query.q: pattern"},
		{desc: "query: boolean", target: "/v1/items/5?flag=yes", reason: ReasonInvalidParameter, want: "query.flag: type"},
		{desc: "query: date-time format", target: "/v1/items/5?since=yesterday", reason: ReasonInvalidParameter, want: "query.since: format"},
		{desc: "query: ipv4 format", target: "/v1/items/5?addr=300.1.1.1", reason: ReasonInvalidParameter, want: "query.addr: format"},
		{desc: "query: exploded array maxItems", target: "/v1/items/5?tags=a&tags=b&tags=c&tags=d", reason: ReasonInvalidParameter, want: "query.tags: maxItems"},
		{desc: "query: array item pattern", target: "/v1/items/5?tags=a&tags=B", reason: ReasonInvalidParameter, want: "query.tags/1: pattern"},
		{desc: "query: comma array item type", target: "/v1/items/5?ids=1,x", reason: ReasonInvalidParameter, want: "query.ids/1: type"},
		{desc: "query: empty comma array is empty", target: "/v1/items/5?ids=", reason: ReasonInvalidParameter, want: "query.ids: minItems"},
		{desc: "query: comma array given twice", target: "/v1/items/5?ids=1&ids=2", reason: ReasonInvalidParameter, want: "query.ids: duplicate"},
		{desc: "query: pipe-delimited item enum", target: "/v1/items/5?pipe=a|c", reason: ReasonInvalidParameter, want: "query.pipe/1: enum"},
		{desc: "query: space-delimited item type", target: "/v1/items/5?space=1+x", reason: ReasonInvalidParameter, want: "query.space/1: type"},
		{desc: "query: deepObject property enum", target: "/v1/items/5?filter[color]=green", reason: ReasonInvalidParameter, want: "query.filter/color: enum"},
		{desc: "query: deepObject unknown property", target: "/v1/items/5?filter[shape]=round", reason: ReasonInvalidParameter, want: "query.filter/shape: additionalProperties"},
		{desc: "query: deepObject nesting", target: "/v1/items/5?filter[a][b]=1", reason: ReasonInvalidParameter, want: "query.filter: style"},
		{desc: "query: exploded object property", target: "/v1/items/5?count=60", reason: ReasonInvalidParameter, want: "query.page/count: maximum"},
		{desc: "query: JSON content parameter", target: "/v1/items/5?doc=%7B%22b%22%3A1%7D", reason: ReasonInvalidParameter, want: "query.doc/a: required"},
		{desc: "query: JSON content not JSON", target: "/v1/items/5?doc=nope", reason: ReasonInvalidParameter, want: "query.doc: style"},
		{desc: "query: semicolon separator", target: "/v1/items/5?limit=1;limit=1000", reason: ReasonInvalidParameter, want: "query.limit: encoding"},
		{desc: "query: bad percent escape", target: "/v1/items/5?q=%zz", reason: ReasonInvalidParameter, want: "query.q: encoding"},

		{desc: "header: required missing", target: "/v1/items/5", header: []string{"X-Tenant", "-"}, reason: ReasonMissingParameter, want: "header.X-Tenant: required"},
		{desc: "header: uuid format", target: "/v1/items/5", header: []string{"X-Tenant", "nope"}, reason: ReasonInvalidParameter, want: "header.X-Tenant: format"},
		{desc: "header: repeated single value", target: "/v1/items/5", header: []string{"X-Tenant", tenant, "X-Tenant", tenant}, reason: ReasonInvalidParameter, want: "header.X-Tenant: duplicate"},
		{desc: "header: enum", target: "/v1/items/5", header: []string{"X-Mode", "slow"}, reason: ReasonInvalidParameter, want: "header.X-Mode: enum"},
		{desc: "header: array maxItems", target: "/v1/items/5", header: []string{"X-Trace", "1,2,3"}, reason: ReasonInvalidParameter, want: "header.X-Trace: maxItems"},
		{desc: "header: array over several lines", target: "/v1/items/5", header: []string{"X-Trace", "1", "X-Trace", "2"}},
		{desc: "header: array item type", target: "/v1/items/5", header: []string{"X-Trace", "1,a"}, reason: ReasonInvalidParameter, want: "header.X-Trace/1: type"},

		{desc: "cookie: required missing", target: "/v1/items/5", header: []string{"Cookie", "-"}, reason: ReasonMissingParameter, want: "cookie.theme: required"},
		{desc: "cookie: enum", target: "/v1/items/5", header: []string{"Cookie", "theme=blue"}, reason: ReasonInvalidParameter, want: "cookie.theme: enum"},
		{desc: "cookie: minLength", target: "/v1/items/5", header: []string{"Cookie", "theme=dark; session=short"}, reason: ReasonInvalidParameter, want: "cookie.session: minLength"},
		{desc: "cookie: repeated", target: "/v1/items/5", header: []string{"Cookie", "theme=dark; theme=light"}, reason: ReasonInvalidParameter, want: "cookie.theme: duplicate"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ex := getItem(tc.target, tc.header...)
			err := validate(t, d, "getItem", Options{}, ex)
			expectReject(t, ex, err, http.StatusBadRequest, tc.reason, tc.want)
		})
	}
}

func TestPathStyles(t *testing.T) {
	d := testDoc(t, api31)
	tests := []struct {
		desc, target, op, reason, want string
	}{
		{desc: "composite segment", target: "/v1/files/report.png", op: "getFile"},
		{desc: "composite segment: enum", target: "/v1/files/report.gif", op: "getFile", reason: ReasonInvalidParameter, want: "path.ext: enum"},
		{desc: "composite segment: pattern", target: "/v1/files/Report.png", op: "getFile", reason: ReasonInvalidParameter, want: "path.name: pattern"},
		{desc: "composite segment: no separator", target: "/v1/files/report", op: "getFile", reason: ReasonInvalidParameter, want: "path.name: template"},
		{desc: "composite segment: first parameter is shortest", target: "/v1/files/a.b.png", op: "getFile", reason: ReasonInvalidParameter, want: "path.ext: enum"},
		{desc: "label array", target: "/v1/label/.1,2,3", op: "labelIds"},
		{desc: "label array: no dot", target: "/v1/label/1,2", op: "labelIds", reason: ReasonInvalidParameter, want: "path.ids: style"},
		{desc: "label array: item type", target: "/v1/label/.1,x", op: "labelIds", reason: ReasonInvalidParameter, want: "path.ids/1: type"},
		{desc: "matrix primitive", target: "/v1/matrix/;id=5", op: "matrixId"},
		{desc: "matrix primitive: type", target: "/v1/matrix/;id=x", op: "matrixId", reason: ReasonInvalidParameter, want: "path.id: type"},
		{desc: "matrix primitive: no prefix", target: "/v1/matrix/5", op: "matrixId", reason: ReasonInvalidParameter, want: "path.id: style"},
		{desc: "matrix primitive: other name", target: "/v1/matrix/;idx=5", op: "matrixId", reason: ReasonInvalidParameter, want: "path.id: style"},
		{desc: "simple exploded object", target: "/v1/colors/R=100,G=200", op: "colorObject"},
		{desc: "simple exploded object: maximum", target: "/v1/colors/R=300", op: "colorObject", reason: ReasonInvalidParameter, want: "path.color/R: maximum"},
		{desc: "simple exploded object: required", target: "/v1/colors/G=1", op: "colorObject", reason: ReasonInvalidParameter, want: "path.color/R: required"},
		{desc: "simple exploded object: no =", target: "/v1/colors/R100", op: "colorObject", reason: ReasonInvalidParameter, want: "path.color: style"},
		{desc: "renamed parameter", target: "/v1/users/u-1/orders", op: "listOrders"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ex := request(http.MethodGet, tc.target, "")
			err := validate(t, d, tc.op, Options{}, ex)
			expectReject(t, ex, err, http.StatusBadRequest, tc.reason, tc.want)
		})
	}
}

const validItem = `{"name":"A book","kind":"book","owner_id":"u1"}`

// item returns validItem with the members of extra (a JSON object's
// inside, such as `"price":1`) added.
func item(extra string) string {
	if extra == "" {
		return validItem
	}
	return strings.TrimSuffix(validItem, "}") + "," + extra + "}"
}

func TestBody(t *testing.T) {
	d := testDoc(t, api31)
	tests := []struct {
		desc        string
		body        string
		contentType []string // default application/json
		strict      bool
		status      int
		reason      string
		want        string
	}{
		{desc: "valid; a readOnly required property is not required in requests", body: validItem},
		{desc: "readOnly property sent is still validated", body: item(`"id":"nope"`), status: 400, reason: ReasonSchemaViolation, want: "body/id: format"},
		{desc: "required", body: `{"kind":"book","owner_id":"u1"}`, status: 400, reason: ReasonSchemaViolation, want: "body/name: required"},
		{desc: "not an object", body: `[]`, status: 400, reason: ReasonSchemaViolation, want: "body: type"},
		{desc: "minLength", body: `{"name":"","kind":"book","owner_id":"u1"}`, status: 400, reason: ReasonSchemaViolation, want: "body/name: minLength"},
		{desc: "maxLength", body: `{"name":"` + strings.Repeat("a", 21) + `","kind":"book","owner_id":"u1"}`, status: 400, reason: ReasonSchemaViolation, want: "body/name: maxLength"},
		{desc: "pattern", body: `{"name":"B00k","kind":"book","owner_id":"u1"}`, status: 400, reason: ReasonSchemaViolation, want: "body/name: pattern"},
		{desc: "enum", body: `{"name":"A","kind":"cd","owner_id":"u1"}`, status: 400, reason: ReasonSchemaViolation, want: "body/kind: enum"},
		{desc: "const", body: item(`"version":2`), status: 400, reason: ReasonSchemaViolation, want: "body/version: const"},
		{desc: "minimum", body: item(`"price":-1`), status: 400, reason: ReasonSchemaViolation, want: "body/price: minimum"},
		{desc: "exclusiveMaximum", body: item(`"price":10000`), status: 400, reason: ReasonSchemaViolation, want: "body/price: exclusiveMaximum"},
		{desc: "integer type", body: item(`"count":1.5`), status: 400, reason: ReasonSchemaViolation, want: "body/count: type"},
		{desc: "int32 format", body: item(`"count":3000000000`), status: 400, reason: ReasonSchemaViolation, want: "body/count: format"},
		{desc: "email format", body: item(`"email":"not-an-email"`), status: 400, reason: ReasonSchemaViolation, want: "body/email: format"},
		{desc: "ipv4 format", body: item(`"ip":"1.2.3"`), status: 400, reason: ReasonSchemaViolation, want: "body/ip: format"},
		{desc: "date-time format", body: item(`"created":"2024-13-01T00:00:00Z"`), status: 400, reason: ReasonSchemaViolation, want: "body/created: format"},
		{desc: "uuid format", body: item(`"id":"0b6f7c1e"`), status: 400, reason: ReasonSchemaViolation, want: "body/id: format"},
		{desc: "3.1 nullable: null", body: item(`"note":null`)},
		{desc: "3.1 nullable: other type", body: item(`"note":5`), status: 400, reason: ReasonSchemaViolation, want: "body/note: type"},
		{desc: "minItems", body: item(`"tags":[]`), status: 400, reason: ReasonSchemaViolation, want: "body/tags: minItems"},
		{desc: "maxItems", body: item(`"tags":["a","b","c","d"]`), status: 400, reason: ReasonSchemaViolation, want: "body/tags: maxItems"},
		{desc: "nested object through $defs", body: item(`"dims":{"w":1}`), status: 400, reason: ReasonSchemaViolation, want: "body/dims/h: required"},
		{desc: "nested minimum", body: item(`"dims":{"w":0,"h":1}`), status: 400, reason: ReasonSchemaViolation, want: "body/dims/w: minimum"},
		{desc: "recursive schema", body: item(`"lines":[{"sku":"a","children":[{"sku":1}]}]`), status: 400, reason: ReasonSchemaViolation, want: "body/lines/0/children/0/sku: type"},
		{desc: "additionalProperties false", body: item(`"admin":true`), status: 400, reason: ReasonSchemaViolation, want: "body/admin: additionalProperties"},
		{desc: "additionalProperties schema", body: item(`"meta":{"k":1}`), status: 400, reason: ReasonSchemaViolation, want: "body/meta/k: type"},
		// Numbers the validator would spend seconds on (big.Rat of 1e999999)
		// are refused unevaluated; every float64 still validates.
		{desc: "huge exponent refused unevaluated", body: item(`"price":1e999999`), status: 400, reason: ReasonSchemaViolation, want: "body/price: number_size"},
		{desc: "huge negative exponent", body: item(`"dims":{"w":1,"h":1e-0001000}`), status: 400, reason: ReasonSchemaViolation, want: "body/dims/h: number_size"},
		{desc: "long integer literal", body: item(`"count":` + strings.Repeat("9", 401)), status: 400, reason: ReasonSchemaViolation, want: "body/count: number_size"},
		{desc: "float64 range passes the guard", body: item(`"price":1e-300`)},

		{desc: "lenient: undeclared nested property passes", body: item(`"dims":{"w":1,"h":1,"d":1}`)},
		{desc: "strict: undeclared nested property", body: item(`"dims":{"w":1,"h":1,"d":1}`), strict: true, status: 400, reason: ReasonSchemaViolation, want: "body/dims/d: unevaluatedProperties"},
		{desc: "strict: allOf branches declare together", body: item(`"lines":[{"sku":"a","price":1,"children":[{"sku":"b"}]}]`), strict: true},
		{desc: "strict: undeclared in a composed item", body: item(`"lines":[{"sku":"a","x":1}]`), strict: true, status: 400, reason: ReasonSchemaViolation, want: "body/lines/0/x: unevaluatedProperties"},
		{desc: "strict: additionalProperties schema declares", body: item(`"meta":{"k":"v"}`), strict: true},
		{desc: "strict: readOnly property is declared", body: item(`"id":"` + tenant + `"`), strict: true},

		{desc: "not JSON", body: `{"name":`, status: 400, reason: gateway.ReasonInvalidJSON},
		{desc: "charset parameter", body: validItem, contentType: []string{"application/json; charset=utf-8"}},
		{desc: "+json media type is validated", body: `{}`, contentType: []string{"application/merge-patch+json"}, status: 400, reason: ReasonSchemaViolation, want: "body/name: required"},
		{desc: "non-JSON media type is allowed, not validated", body: `a=1`, contentType: []string{"application/x-www-form-urlencoded"}},
		{desc: "media type not listed", body: validItem, contentType: []string{"text/plain"}, status: 415, reason: ReasonUnsupportedMediaType, want: "header.Content-Type: media_type"},
		{desc: "no content type", body: validItem, contentType: []string{}, status: 415, reason: ReasonUnsupportedMediaType, want: "header.Content-Type: missing"},
		{desc: "two content types", body: validItem, contentType: []string{"application/json", "text/plain"}, status: 415, reason: ReasonUnsupportedMediaType, want: "header.Content-Type: duplicate"},
		{desc: "unparsable content type", body: validItem, contentType: []string{"application/"}, status: 415, reason: ReasonUnsupportedMediaType},
		{desc: "required body missing", body: "", status: 400, reason: ReasonMissingBody, want: "body: required"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var h []string
			cts := tc.contentType
			if cts == nil {
				cts = []string{"application/json"}
			}
			for _, ct := range cts {
				h = append(h, "Content-Type", ct)
			}
			ex := request(http.MethodPost, "/v1/items", tc.body, h...)
			err := validate(t, d, "createItem", Options{Strict: tc.strict}, ex)
			expectReject(t, ex, err, tc.status, tc.reason, tc.want)
		})
	}
}

func TestBodyPresence(t *testing.T) {
	d := testDoc(t, api31)
	tests := []struct {
		desc, method, target, body, op string
		strict                         bool
		reason                         string
	}{
		{desc: "optional body absent", method: "PUT", target: "/health/ping", op: "putPing"},
		{desc: "lenient: body on an operation without requestBody", method: "DELETE", target: "/v1/items/5", body: `{"a":1}`, op: "deleteItem"},
		{desc: "strict: body on an operation without requestBody", method: "DELETE", target: "/v1/items/5", body: `{"a":1}`, op: "deleteItem", strict: true, reason: ReasonUnexpectedBody},
		{desc: "strict: no body on an operation without requestBody", method: "DELETE", target: "/v1/items/5", op: "deleteItem", strict: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ex := request(tc.method, tc.target, tc.body, "Content-Type", "application/json")
			err := validate(t, d, tc.op, Options{Strict: tc.strict}, ex)
			expectReject(t, ex, err, http.StatusBadRequest, tc.reason, "")
		})
	}
}

func TestStrictQuery(t *testing.T) {
	d := testDoc(t, api31)
	tests := []struct {
		desc, target string
		strict       bool
		want         string
	}{
		{desc: "lenient: undeclared parameter passes", target: "/v1/items/5?debug=1"},
		{desc: "strict: undeclared parameter", target: "/v1/items/5?limit=1&debug=1", strict: true, want: "query.debug: undeclared"},
		{desc: "strict: deepObject and exploded object keys are declared", target: "/v1/items/5?filter[color]=red&offset=1", strict: true},
		{desc: "strict: another deepObject name is not", target: "/v1/items/5?other[color]=red", strict: true, want: "query.other[color]: undeclared"},
		{desc: "strict: undeclared name is clipped", target: "/v1/items/5?%01" + strings.Repeat("x", 100) + "=1", strict: true, want: "query.?" + strings.Repeat("x", 63) + "...: undeclared"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ex := getItem(tc.target)
			err := validate(t, d, "getItem", Options{Strict: tc.strict}, ex)
			reason := ""
			if tc.want != "" {
				reason = ReasonUndeclaredParameter
			}
			expectReject(t, ex, err, http.StatusBadRequest, reason, tc.want)
		})
	}
	t.Run("strict: operation without parameters", func(t *testing.T) {
		ex := request("GET", "/health/ping?x=1", "")
		err := validate(t, d, "ping", Options{Strict: true}, ex)
		expectReject(t, ex, err, http.StatusBadRequest, ReasonUndeclaredParameter, "query.x: undeclared")
	})
}

func TestLogMode(t *testing.T) {
	d := testDoc(t, api31)
	t.Run("violations are recorded and the request passes", func(t *testing.T) {
		ex := getItem("/v1/items/0?limit=500&debug=1")
		if err := validate(t, d, "getItem", Options{Mode: ModeLog, Strict: true}, ex); err != nil {
			t.Fatal(err)
		}
		got := violations(ex)
		for _, want := range []string{"path.id: minimum", "query.limit: maximum", "query.debug: undeclared"} {
			if !slices.Contains(got, want) {
				t.Errorf("violations %q lack %q", got, want)
			}
		}
		if r := ex.Findings[NoteWouldDeny]; r != ReasonInvalidParameter {
			t.Errorf("validation_reason = %v", r)
		}
	})
	t.Run("body violations after parameter violations", func(t *testing.T) {
		ex := request("POST", "/v1/items?x=1", `{"name":""}`, "Content-Type", "application/json")
		if err := validate(t, d, "createItem", Options{Mode: ModeLog, Strict: true}, ex); err != nil {
			t.Fatal(err)
		}
		got := violations(ex)
		for _, want := range []string{"query.x: undeclared", "body/name: minLength", "body/kind: required"} {
			if !slices.Contains(got, want) {
				t.Errorf("violations %q lack %q", got, want)
			}
		}
	})
	t.Run("invalid JSON is recorded", func(t *testing.T) {
		ex := request("POST", "/v1/items", `{`, "Content-Type", "application/json")
		if err := validate(t, d, "createItem", Options{Mode: ModeLog}, ex); err != nil {
			t.Fatal(err)
		}
		if r := ex.Findings[NoteWouldDeny]; r != gateway.ReasonInvalidJSON {
			t.Errorf("validation_reason = %v", r)
		}
	})
	t.Run("a body that cannot be read fails in log mode too", func(t *testing.T) {
		ex := request("POST", "/v1/items", "", "Content-Type", "application/json")
		ex.Request.Body = io.NopCloser(failingReader{})
		err := validate(t, d, "createItem", Options{Mode: ModeLog}, ex)
		expectReject(t, ex, err, http.StatusBadRequest, gateway.ReasonBodyReadFailed, "")
	})
	t.Run("valid request records nothing", func(t *testing.T) {
		ex := getItem("/v1/items/5")
		if err := validate(t, d, "getItem", Options{Mode: ModeLog}, ex); err != nil {
			t.Fatal(err)
		}
		if ex.Findings != nil {
			t.Errorf("findings %v", ex.Findings)
		}
	})
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestEnforceRecordsEveryParameterViolation(t *testing.T) {
	d := testDoc(t, api31)
	ex := getItem("/v1/items/0?limit=500", "X-Tenant", "-")
	err := validate(t, d, "getItem", Options{}, ex)
	expectReject(t, ex, err, 400, ReasonInvalidParameter, "")
	want := []string{"path.id: minimum", "query.limit: maximum", "header.X-Tenant: required"}
	if got := violations(ex); !slices.Equal(got, want) {
		t.Errorf("violations %q, want %q", got, want)
	}
	var rej *gateway.Reject
	errors.As(err, &rej)
	if rej.Detail != strings.Join(want, "; ") {
		t.Errorf("detail %q", rej.Detail)
	}
}

func TestViolationsNeverHoldValues(t *testing.T) {
	d := testDoc(t, api31)
	const secret = "s3cr3t-VALUE-abc"
	for _, ex := range []*gateway.Exchange{
		getItem("/v1/items/5?q="+secret, "X-Tenant", secret, "Cookie", "theme="+secret),
		request("POST", "/v1/items", `{"name":"`+secret+`","kind":"`+secret+`","owner_id":1,"email":"`+secret+`"}`, "Content-Type", "application/json"),
	} {
		op, params, _ := d.Match(ex.Request.Method, ex.Request.URL.Path, nil)
		ex.Params = params
		v, _ := d.Validator(op, Options{Strict: true})
		err := v.ProcessRequest(context.Background(), ex)
		if err == nil {
			t.Fatal("want a violation")
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(strings.Join(violations(ex), " "), secret) {
			t.Errorf("a violation holds the value: %v", err)
		}
	}
}

func TestOpenAPI30(t *testing.T) {
	d := testDoc(t, api30)
	tests := []struct {
		desc, method, target, body, op, reason, want string
	}{
		{desc: "boolean exclusiveMinimum", method: "GET", target: "/api/pets?limit=0", op: "listPets", reason: ReasonInvalidParameter, want: "query.limit: exclusiveMinimum"},
		{desc: "boolean exclusiveMinimum: valid", method: "GET", target: "/api/pets?limit=1", op: "listPets"},
		{desc: "parameter schema by $ref", method: "GET", target: "/api/pets?kind=bird", op: "listPets", reason: ReasonInvalidParameter, want: "query.kind: enum"},
		{desc: "parameter by $ref", method: "GET", target: "/api/pets/nope", op: "getPet", reason: ReasonInvalidParameter, want: "path.petId: format"},
		{desc: "nullable: null", method: "POST", target: "/api/pets", body: `{"name":"a","tag":null,"owner":null,"color":null}`, op: "createPet"},
		{desc: "nullable: other type", method: "POST", target: "/api/pets", body: `{"name":"a","tag":1}`, op: "createPet", reason: ReasonSchemaViolation, want: "body/tag: type"},
		{desc: "nullable enum: other value", method: "POST", target: "/api/pets", body: `{"name":"a","color":"red"}`, op: "createPet", reason: ReasonSchemaViolation, want: "body/color: enum"},
		{desc: "nullable allOf: invalid object", method: "POST", target: "/api/pets", body: `{"name":"a","owner":{}}`, op: "createPet", reason: ReasonSchemaViolation, want: "body/owner: anyOf"},
		{desc: "keywords next to $ref are ignored", method: "POST", target: "/api/pets", body: `{"name":"a","kind":"dog"}`, op: "createPet"},
		{desc: "boolean exclusiveMinimum in body", method: "POST", target: "/api/pets", body: `{"name":"a","weight":0}`, op: "createPet", reason: ReasonSchemaViolation, want: "body/weight: exclusiveMinimum"},
		{desc: "readOnly not required, maxLength", method: "POST", target: "/api/pets", body: `{"name":"abcdefghijk"}`, op: "createPet", reason: ReasonSchemaViolation, want: "body/name: maxLength"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ex := request(tc.method, tc.target, tc.body, "Content-Type", "application/json")
			err := validate(t, d, tc.op, Options{Strict: true}, ex)
			expectReject(t, ex, err, http.StatusBadRequest, tc.reason, tc.want)
		})
	}
}

func TestBookstore(t *testing.T) {
	d := testDoc(t, bookstore)
	tests := []struct {
		desc, method, target, body, op, reason, want string
	}{
		{desc: "create", method: "POST", target: "/books", body: `{"title":"Go","author":"Pike","year":2015}`, op: "createBook"},
		{desc: "create: missing author", method: "POST", target: "/books", body: `{"title":"Go"}`, op: "createBook", reason: ReasonSchemaViolation, want: "body/author: required"},
		{desc: "create: unknown property", method: "POST", target: "/books", body: `{"title":"Go","author":"Pike","isbn":"x"}`, op: "createBook", reason: ReasonSchemaViolation, want: "body/isbn: additionalProperties"},
		{desc: "list: limit", method: "GET", target: "/books?limit=0", op: "listBooks", reason: ReasonInvalidParameter, want: "query.limit: minimum"},
		{desc: "get: id pattern", method: "GET", target: "/books/abc", op: "getBook", reason: ReasonInvalidParameter, want: "path.id: pattern"},
		{desc: "get", method: "GET", target: "/books/42", op: "getBook"},
		{desc: "HEAD matches GET", method: "HEAD", target: "/books/42", op: "getBook"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ex := request(tc.method, tc.target, tc.body, "Content-Type", "application/json")
			err := validate(t, d, tc.op, Options{Strict: true}, ex)
			expectReject(t, ex, err, http.StatusBadRequest, tc.reason, tc.want)
		})
	}
}

func TestMediaTypeRanges(t *testing.T) {
	d, err := LoadBytes("doc.yaml", []byte(doc31("  /a:\n    post:\n      operationId: a\n"+
		"      requestBody: {required: true, content: {\"application/*\": {schema: {type: object, required: [x]}}, \"text/plain\": {}}}\n"+okResponse)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc, contentType, body string
		status                  int
		reason, want            string
	}{
		{desc: "JSON under a range is validated", contentType: "application/json", body: `{}`, status: 400, reason: ReasonSchemaViolation, want: "body/x: required"},
		{desc: "+json under a range is validated", contentType: "application/problem+json", body: `{"x":1}`},
		{desc: "non-JSON under a range is not", contentType: "application/xml", body: `<a/>`},
		{desc: "exact entry without schema", contentType: "text/plain", body: `hello`},
		{desc: "outside every entry", contentType: "image/png", body: `x`, status: 415, reason: ReasonUnsupportedMediaType},
		{desc: "type case is ignored", contentType: "Application/JSON", body: `{}`, status: 400, reason: ReasonSchemaViolation},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ex := request("POST", "/a", tc.body, "Content-Type", tc.contentType)
			expectReject(t, ex, validate(t, d, "a", Options{}, ex), tc.status, tc.reason, tc.want)
		})
	}
}

func TestDeprecatedIsNoted(t *testing.T) {
	d := testDoc(t, api31)
	ex := request("DELETE", "/v1/items/5", "")
	if err := validate(t, d, "deleteItem", Options{}, ex); err != nil {
		t.Fatal(err)
	}
	if ex.Findings[NoteDeprecated] != true {
		t.Errorf("findings %v", ex.Findings)
	}
}

func TestPathValue(t *testing.T) {
	d := testDoc(t, api31)
	tests := []struct {
		op, path, name, want string
		ok                   bool
	}{
		{"getFile", "/v1/files/report.tar.gz", "name", "report", true},
		{"getFile", "/v1/files/report.tar.gz", "ext", "tar.gz", true},
		{"listOrders", "/v1/users/u-7/orders", "user-id", "u-7", true},
		{"listOrders", "/v1/users/u-7/orders", "user_id", "", false},
		{"getItem", "/v1/items/5", "id", "5", true},
		{"getItem", "/v1/items/5", "limit", "", false},
	}
	for _, tc := range tests {
		op, params, ok := d.Match("GET", tc.path, nil)
		if !ok || op.ID != tc.op {
			t.Fatalf("%s matched %v", tc.path, op)
		}
		if got, ok := op.PathValue(params, tc.name); got != tc.want || ok != tc.ok {
			t.Errorf("%s PathValue(%q) = %q, %v; want %q, %v", tc.path, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestConcurrentValidation shares one Validator and one Dispatcher between
// goroutines, for the race detector.
func TestConcurrentValidation(t *testing.T) {
	d := testDoc(t, api31)
	op := d.OperationByID("createItem")
	v, err := d.Validator(op, Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Dispatcher(Options{Strict: true, Unknown: UnknownShadow, Shadow: NewShadowReport(10, nil)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				body, wantErr := validItem, i%2 == 1
				if wantErr {
					body = item(`"dims":{"w":1,"h":1,"x":1}`)
				}
				ex := request("POST", "/v1/items", body, "Content-Type", "application/json")
				if err := v.ProcessRequest(context.Background(), ex); (err != nil) != wantErr {
					errs <- fmt.Sprintf("validator: %v", err)
					return
				}
				ex = request("GET", "/v1/other/"+strconv.Itoa(i), "")
				if err := s.ProcessRequest(context.Background(), ex); err != nil {
					errs <- fmt.Sprintf("dispatcher: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestStrictViolationsAreReal pins that strict mode does not report the
// declared properties of an object as undeclared when something else in
// it failed (failed subschemas lose their annotations in JSON Schema
// 2020-12, which would make every property look unevaluated).
func TestStrictViolationsAreReal(t *testing.T) {
	d := testDoc(t, api31)
	tests := []struct {
		desc, body string
		want       []string
	}{
		{desc: "additionalProperties false", body: item(`"admin":true`), want: []string{"body/admin: additionalProperties"}},
		{desc: "another failure", body: item(`"price":-1`), want: []string{"body/price: minimum"}},
		{desc: "nested undeclared only", body: item(`"dims":{"w":1,"h":1,"z":1}`), want: []string{"body/dims/z: unevaluatedProperties"}},
		{desc: "nested undeclared and failure", body: item(`"dims":{"w":0,"h":1,"z":1}`), want: []string{"body/dims/w: minimum"}},
		{desc: "two nested undeclared", body: item(`"dims":{"w":1,"h":1,"z":1,"y":2},"lines":[{"sku":"a","q":1}]`),
			want: []string{"body/dims/y: unevaluatedProperties", "body/dims/z: unevaluatedProperties", "body/lines/0/q: unevaluatedProperties"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ex := request("POST", "/v1/items", tc.body, "Content-Type", "application/json")
			err := validate(t, d, "createItem", Options{Strict: true}, ex)
			expectReject(t, ex, err, 400, ReasonSchemaViolation, "")
			if got := violations(ex); !slices.Equal(got, tc.want) {
				t.Errorf("violations %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStrictInlineSchema is TestStrictViolationsAreReal for a body schema
// written inline, whose failures the schema engine reports flatter.
func TestStrictInlineSchema(t *testing.T) {
	d, err := LoadBytes("doc.yaml", []byte(doc31("  /a:\n    post:\n      operationId: a\n      requestBody:\n        content:\n          application/json:\n"+
		"            schema:\n              type: object\n              properties:\n                name: {type: string}\n"+
		"                items: {type: array, items: {type: object, properties: {q: {type: integer}}}}\n"+okResponse)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc, body string
		want       []string
	}{
		{desc: "nested undeclared", body: `{"name":"a","items":[{"q":1,"x":1}]}`, want: []string{"body/items/0/x: unevaluatedProperties"}},
		{desc: "undeclared at two levels", body: `{"name":"a","extra":1,"items":[{"q":1,"x":1}]}`, want: []string{"body/items/0/x: unevaluatedProperties"}},
		{desc: "undeclared at the top", body: `{"name":"a","extra":1,"more":2}`, want: []string{"body/extra: unevaluatedProperties", "body/more: unevaluatedProperties"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ex := request("POST", "/a", tc.body, "Content-Type", "application/json")
			err := validate(t, d, "a", Options{Strict: true}, ex)
			expectReject(t, ex, err, 400, ReasonSchemaViolation, "")
			if got := violations(ex); !slices.Equal(got, tc.want) {
				t.Errorf("violations %q, want %q", got, tc.want)
			}
		})
	}
}
