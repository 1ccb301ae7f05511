package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Quotas are counted in the same stores as rate limits, as checks of kind
// KindQuota, so that a request meets its quotas and its limits all or
// nothing and, with Redis, in one round trip.
//
// A quota admits Limit requests per calendar window (a day or a month in a
// time zone). The caller puts the window's ID in the check's key and its end
// in WindowEnd, so each window starts from zero. In the memory store a
// quota key holds WindowEnd + used (nanoseconds), which stays after now
// until the window ends: the janitor then forgets it like an idle rate
// limit key, and the value never collides with a TAT's meaning since the
// key is only ever read as a quota. Redis holds the plain count, expiring
// after the window.

// Kind says which algorithm a Check uses.
type Kind uint8

// The kinds of checks.
const (
	KindRate  Kind = iota // GCRA on Limit
	KindQuota             // a count of Quota per window ending at WindowEnd
)

// MaxQuota is the largest quota a check may have: windowEnd + used must not
// overflow int64 nanoseconds, and nobody needs more than 10^15 requests in
// a window.
const MaxQuota = 1_000_000_000_000_000

// Period is a quota's calendar window.
type Period uint8

// The periods.
const (
	Day Period = iota + 1
	Month
)

// ParsePeriod returns the Period named name: day or month.
func ParsePeriod(name string) (Period, error) {
	switch name {
	case "day":
		return Day, nil
	case "month":
		return Month, nil
	}
	return 0, fmt.Errorf("unknown quota period %q: want day or month", name)
}

// String returns the configuration name of p.
func (p Period) String() string {
	switch p {
	case Day:
		return "day"
	case Month:
		return "month"
	}
	return "period(" + strconv.Itoa(int(p)) + ")"
}

// Quota is a number of requests per calendar window in a time zone. A zero
// Quota is not valid.
type Quota struct {
	Limit    int64
	Period   Period
	Location *time.Location // nil means UTC
}

// Validate reports what is wrong with q, if anything.
func (q Quota) Validate() error {
	switch {
	case q.Limit < 1:
		return errors.New("quota limit must be at least 1")
	case q.Limit > MaxQuota:
		return fmt.Errorf("quota limit %d is over the maximum %d", q.Limit, int64(MaxQuota))
	case q.Period != Day && q.Period != Month:
		return errors.New("quota period must be day or month")
	}
	return nil
}

// Window returns the window that contains now: an ID for keys (20261121 for
// a day, 202611 for a month, in q's time zone), its start and its end. A
// window follows the local calendar, so a day across a daylight saving
// change lasts 23 or 25 hours.
func (q Quota) Window(now time.Time) (id string, start, end time.Time) {
	loc := q.Location
	if loc == nil {
		loc = time.UTC
	}
	t := now.In(loc)
	y, m, d := t.Date()
	var buf [8]byte
	b := strconv.AppendInt(buf[:0], int64(y), 10)
	b = append(b, byte('0'+m/10), byte('0'+m%10))
	if q.Period == Month {
		start = time.Date(y, m, 1, 0, 0, 0, 0, loc)
		return string(b), start, start.AddDate(0, 1, 0)
	}
	b = append(b, byte('0'+d/10), byte('0'+d%10))
	start = time.Date(y, m, d, 0, 0, 0, 0, loc)
	return string(b), start, time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// decideQuota is the quota decision for one key: stored is what the memory
// store holds (0 for a new key, else windowEnd + used). A refusal changes
// nothing; RetryAfter is the time left in the window.
func decideQuota(stored, now int64, c *Check) (Result, int64) {
	end := c.WindowEnd
	cost := max(c.Cost, 1)
	used := int64(0)
	if stored > end {
		used = stored - end
	}
	left := max(c.Quota-used, 0)
	res := Result{ResetAfter: time.Duration(max(end-now, 0))}
	if cost > left {
		res.Remaining, res.RetryAfter = left, res.ResetAfter
		return res, stored
	}
	res.Allowed, res.Remaining = true, left-cost
	return res, end + used + cost
}

// quotaUsed is the count held by a memory-store value of a quota key.
func quotaUsed(stored, windowEnd int64) int64 {
	if stored > windowEnd {
		return stored - windowEnd
	}
	return 0
}

// checkQuota is checkSpan for a quota check.
func checkQuota(c Check) error {
	switch {
	case c.Quota < 1 || c.Quota > MaxQuota:
		return fmt.Errorf("quota %d out of range", c.Quota)
	case c.WindowEnd <= 0 || c.WindowEnd > int64(1)<<62:
		return fmt.Errorf("quota window end %d out of range", c.WindowEnd)
	case c.Cost > MaxQuota:
		return fmt.Errorf("cost %d over the maximum quota", c.Cost)
	}
	return nil
}
