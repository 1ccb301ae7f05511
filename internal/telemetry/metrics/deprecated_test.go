package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/versioning"
)

// deprecatedEx is a finished exchange of route whose versioning stage noted
// key (a deprecated version or operation) as value.
func deprecatedEx(route, subject, key, value string) *gateway.Exchange {
	e := ex(route, "", 200, time.Millisecond)
	if subject != "" {
		e.Principal = &gateway.Principal{Subject: subject}
	}
	if key != "" {
		e.Note(key, value)
	}
	return e
}

func TestDeprecatedRequests(t *testing.T) {
	r := newTestRegistry(time.Millisecond)
	r.Observe(deprecatedEx("books", "alice", versioning.FindingDeprecatedVersion, "1"))
	r.Observe(deprecatedEx("books", "alice", versioning.FindingDeprecatedVersion, "1"))
	r.Observe(deprecatedEx("books", "bob", versioning.FindingDeprecatedVersion, "1"))
	r.Observe(deprecatedEx("books", "", versioning.FindingDeprecatedVersion, "1"))
	r.Observe(deprecatedEx("orders", "alice", versioning.FindingDeprecatedOperation, "listOrders"))
	r.Observe(deprecatedEx("removed-route", "carol", versioning.FindingDeprecatedOperation, "GET /x"))
	r.Observe(deprecatedEx("books", "alice", "", ""))                                     // not deprecated
	r.Observe(deprecatedEx("books", "dave", versioning.FindingDeprecatedVersion, "\xff")) // not UTF-8: still a valid label
	both := deprecatedEx("books", "erin", versioning.FindingDeprecatedVersion, "1")
	both.Note(versioning.FindingDeprecatedOperation, "getBook")
	r.Observe(both)

	fams := scrape(t, r)
	for _, tt := range []struct {
		route, version, principal string
		want                      float64
	}{
		{"books", "1", "alice", 2},
		{"books", "1", "bob", 1},
		{"books", "1", versioning.AnonymousKey, 1},
		{"orders", "listOrders", "alice", 1},
		{"other", "GET /x", "carol", 1},
		{"books", "?", "dave", 1},
		{"books", "1", "erin", 1},
		{"books", "getBook", "erin", 1},
	} {
		got := value(fams, "moat_deprecated_requests_total", map[string]string{"route": tt.route, "version": tt.version, "principal": tt.principal})
		if got != tt.want {
			t.Errorf("%s/%s/%s = %v, want %v", tt.route, tt.version, tt.principal, got, tt.want)
		}
	}
	if n := len(fams["moat_deprecated_requests_total"].Metric); n != 8 {
		t.Errorf("%d series, want 8", n)
	}
}

func TestDeprecatedPrincipalsBounded(t *testing.T) {
	d := newDeprecatedUse()
	for i := range MaxDeprecatedPrincipals + 5 {
		d.observe("books", deprecatedEx("books", fmt.Sprintf("p%d", i), versioning.FindingDeprecatedVersion, "1"))
	}
	d.observe("books", deprecatedEx("books", "p0", versioning.FindingDeprecatedVersion, "1"))                     // known: its own series
	d.observe("orders", deprecatedEx("orders", "late", versioning.FindingDeprecatedVersion, "1"))                 // another route: its own cap
	d.observe("books", deprecatedEx("books", "", versioning.FindingDeprecatedVersion, "1"))                       // anonymous: never capped
	d.observe("books", deprecatedEx("books", strings.Repeat("é", 100), versioning.FindingDeprecatedVersion, "1")) // past the cap
	if got := d.vec.WithLabelValues("books", "1", versioning.OverflowKey); counterValue(t, got) != 6 {
		t.Errorf("%s = %v, want 6", versioning.OverflowKey, counterValue(t, got))
	}
	if got := counterValue(t, d.vec.WithLabelValues("books", "1", "p0")); got != 2 {
		t.Errorf("p0 = %v, want 2", got)
	}
	if got := counterValue(t, d.vec.WithLabelValues("orders", "1", "late")); got != 1 {
		t.Errorf("late = %v, want 1", got)
	}
	if got := counterValue(t, d.vec.WithLabelValues("books", "1", versioning.AnonymousKey)); got != 1 {
		t.Errorf("anonymous = %v, want 1", got)
	}
	if got := len(d.seen["books"]); got != MaxDeprecatedPrincipals {
		t.Errorf("%d principals kept, want %d", got, MaxDeprecatedPrincipals)
	}
}

func TestLabelValue(t *testing.T) {
	long := strings.Repeat("a", maxLabelLen-1) + "é"
	for _, tt := range []struct{ in, want string }{
		{"alice", "alice"},
		{"a\xffb", "a?b"},
		{long, long[:maxLabelLen-1]},
	} {
		if got := labelValue(tt.in); got != tt.want {
			t.Errorf("labelValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
