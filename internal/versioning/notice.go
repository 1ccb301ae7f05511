package versioning

import (
	"net/http"
	"strconv"
	"time"
)

// Notice is what clients are told about a deprecated or retiring API
// version or operation: the Deprecation (RFC 9745), Sunset (RFC 8594) and
// Link header fields, computed once, and the dates that decide when its use
// is counted and when it is refused. A Notice is immutable and safe for
// concurrent use; a nil *Notice announces nothing and never retires.
type Notice struct {
	deprecated bool
	depAt      time.Time // when deprecated: from then on its use is counted
	sunset     time.Time // zero when none
	fields     []field
}

type field struct{ name, value string }

// UnknownDeprecation is the deprecation date of something deprecated
// without a date: the Unix epoch, sent as "Deprecation: @0". RFC 9745 only
// defines a date form, and a date in the past says "deprecated already";
// the epoch says so without claiming a date that was never given.
var UnknownDeprecation = time.Unix(0, 0).UTC()

// NewNotice returns the notice of a version or operation. deprecated says
// whether it is deprecated, at since when (a zero at stands for
// UnknownDeprecation); sunset is when it is retired (zero: never) and link
// the absolute URL of the deprecation or migration notice ("" for none),
// which the caller has validated: it is written between angle brackets as
// it is. NewNotice returns nil when there is nothing to announce: not
// deprecated and no sunset.
func NewNotice(deprecated bool, at, sunset time.Time, link string) *Notice {
	if !deprecated && sunset.IsZero() {
		return nil
	}
	n := &Notice{deprecated: deprecated, sunset: sunset}
	if deprecated {
		if at.IsZero() {
			at = UnknownDeprecation
		}
		n.depAt = at
		// RFC 9745: a Structured Field Date, @ and Unix seconds.
		n.fields = append(n.fields, field{"Deprecation", "@" + strconv.FormatInt(at.Unix(), 10)})
	}
	if !sunset.IsZero() {
		n.fields = append(n.fields, field{"Sunset", sunset.UTC().Format(http.TimeFormat)})
	}
	if link != "" {
		if deprecated {
			n.fields = append(n.fields, field{"Link", "<" + link + `>; rel="deprecation"; type="text/html"`})
		}
		if !sunset.IsZero() {
			n.fields = append(n.fields, field{"Link", "<" + link + `>; rel="sunset"; type="text/html"`})
		}
	}
	return n
}

// Apply sets the Deprecation and Sunset fields of h and adds the Link
// fields after any h already holds. It does nothing on a nil Notice; h must
// not be nil otherwise.
func (n *Notice) Apply(h http.Header) {
	if n == nil {
		return
	}
	for _, f := range n.fields {
		if f.name == "Link" {
			h.Add(f.name, f.value)
		} else {
			h.Set(f.name, f.value)
		}
	}
}

// Retired reports whether now is at or after the sunset.
func (n *Notice) Retired(now time.Time) bool {
	return n != nil && !n.sunset.IsZero() && !now.Before(n.sunset)
}

// InEffect reports whether the deprecation has taken effect at now: the
// thing is deprecated and now is at or after its deprecation date. Before
// that, the headers announce a deprecation to come and use is not counted.
func (n *Notice) InEffect(now time.Time) bool {
	return n != nil && n.deprecated && !now.Before(n.depAt)
}

// Sunset returns the retirement time, zero for none.
func (n *Notice) Sunset() time.Time {
	if n == nil {
		return time.Time{}
	}
	return n.sunset
}
