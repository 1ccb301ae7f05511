package payload

// formLimits are the bounds checkForm enforces. Every field must be at
// least 1; maxFields at most maxURLParams.
type formLimits struct {
	maxFields int // '&'-separated segments, empty ones included
	maxField  int // bytes of one segment as sent
}

// maxURLParams is the most '&'-separated segments net/url.ParseQuery
// parses (its defaultMaxParams); beyond it ParseQuery returns an error and
// url.URL.Query an empty map.
const maxURLParams = 10000

// checkForm checks an application/x-www-form-urlencoded body without
// decoding it: at most l.maxFields segments separated by '&' (empty ones
// included, as net/url counts them), none longer than l.maxField bytes, and
// nothing net/url.ParseQuery refuses (a ';' separator, a '%' not followed by
// two hex digits). A body checkForm accepts therefore parses without error,
// to the same fields, in every later stage that uses url.ParseQuery, and an
// upstream that splits on ';' cannot see fields the gateway did not.
func checkForm(b []byte, l *formLimits) finding {
	fields := 0
	for start := 0; start <= len(b); {
		end := start
		for end < len(b) && b[end] != '&' {
			end++
		}
		fields++
		if fields > l.maxFields {
			return finding{reason: ReasonFormTooManyFields, at: int64(start), got: int64(fields), limit: int64(l.maxFields)}
		}
		if size := end - start; size > l.maxField {
			return finding{reason: ReasonFormFieldTooLong, at: int64(start), got: int64(size), limit: int64(l.maxField)}
		}
		for i := start; i < end; i++ {
			switch b[i] {
			case ';':
				return finding{reason: ReasonInvalidForm, at: int64(i)}
			case '%':
				if i+2 >= end || !isHex(b[i+1]) || !isHex(b[i+2]) {
					return finding{reason: ReasonInvalidForm, at: int64(i)}
				}
				i += 2
			}
		}
		start = end + 1
	}
	return finding{}
}
