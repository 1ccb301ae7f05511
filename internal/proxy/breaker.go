package proxy

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/moat-gateway/moat/internal/config"
)

// Fallbacks for a zero circuit_breaker block; config applies the same values.
const (
	defaultFailureRatio     = 0.5
	defaultMinRequests      = 20
	defaultBreakerWindow    = 10 * time.Second
	defaultBreakerOpenFor   = 30 * time.Second
	defaultHalfOpenRequests = 5
)

// newBreaker builds the circuit breaker of one upstream. While closed it
// counts outcomes in a fixed window; it opens once at least MinRequests
// exchanges finished in the window and the share of failures among them
// reaches FailureRatio. After OpenFor it lets HalfOpenRequests probes
// through: that many successes close it, one failure opens it again.
//
// Exchanges whose outcome says nothing about the upstream (the client went
// away, its body was too large) are reported as errExcluded and count as
// neither; requests still in flight are not counted either, so a burst of
// concurrent requests does not dilute the ratio.
func newBreaker(name string, c *config.CircuitBreaker, log *slog.Logger) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	ratio := c.FailureRatio
	if ratio <= 0 || ratio > 1 {
		ratio = defaultFailureRatio
	}
	minRequests := uint32(defaultMinRequests)
	if c.MinRequests > 0 {
		minRequests = uint32(c.MinRequests)
	}
	halfOpen := uint32(defaultHalfOpenRequests)
	if c.HalfOpenRequests > 0 {
		halfOpen = uint32(c.HalfOpenRequests)
	}
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: halfOpen,
		Interval:    orDefault(c.Window.D(), defaultBreakerWindow),
		Timeout:     orDefault(c.OpenFor.D(), defaultBreakerOpenFor),
		ReadyToTrip: func(n gobreaker.Counts) bool {
			finished := n.TotalSuccesses + n.TotalFailures
			return finished >= minRequests && float64(n.TotalFailures) >= ratio*float64(finished)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errExcluded) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "upstream circuit breaker changed state", "from", from.String(), "to", to.String())
		},
	})
}
