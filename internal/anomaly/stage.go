package anomaly

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// BlockStageOptions configures a BlockStage.
type BlockStageOptions struct {
	Blocker    Blocker
	IP         bool // check the client address (place the stage before authentication)
	Principal  bool // check the principal (place the stage after authentication)
	IPv6Prefix int  // as the Detector's ipv6_prefix; default 64
	Status     int  // 403 (default) or 429
	FailOpen   bool // admit, logged, when the store cannot answer; default: 503 block_store_unavailable
	Log        *slog.Logger
	Now        func() time.Time // default time.Now
}

// BlockStage refuses requests from blocked client addresses or principals
// with Status and reason temporarily_blocked, and a Retry-After until the
// block ends. It is immutable apart from its counters and safe for
// concurrent use.
type BlockStage struct {
	o        BlockStageOptions
	refused  atomic.Uint64
	failOpen atomic.Uint64
	lastLog  atomic.Int64
}

// storeErrorLogEvery bounds the fail_open log lines to one per interval.
const storeErrorLogEvery = 10 * time.Second

// NewBlockStage builds a block stage.
func NewBlockStage(o BlockStageOptions) *BlockStage {
	if o.IPv6Prefix == 0 {
		o.IPv6Prefix = 64
	}
	if o.Status == 0 {
		o.Status = http.StatusForbidden
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &BlockStage{o: o}
}

// ProcessRequest implements gateway.RequestStage.
func (s *BlockStage) ProcessRequest(ctx context.Context, ex *gateway.Exchange) error {
	if s.o.IP && ex.ClientIP.IsValid() {
		if err := s.check(ctx, KindIP, FormatIPSubject(IPSubject(ex.ClientIP, s.o.IPv6Prefix))); err != nil {
			return err
		}
	}
	if s.o.Principal && ex.Principal != nil {
		if err := s.check(ctx, KindPrincipal, ex.Principal.Authenticator+":"+ex.Principal.Subject); err != nil {
			return err
		}
	}
	return nil
}

func (s *BlockStage) check(ctx context.Context, kind, subject string) error {
	blocked, until, err := s.o.Blocker.Blocked(ctx, kind, subject)
	if err != nil {
		if !s.o.FailOpen {
			return &gateway.Reject{Status: http.StatusServiceUnavailable, ReasonID: ReasonBlockStoreUnavailable,
				Detail: kind + " block lookup", Err: err}
		}
		n := s.failOpen.Add(1)
		now := s.o.Now().UnixNano()
		if last := s.lastLog.Load(); now-last >= int64(storeErrorLogEvery) && s.lastLog.CompareAndSwap(last, now) {
			s.o.Log.Warn("block store unavailable; admitting (on_store_error fail_open)", "error", err, "admitted_total", n)
		}
		return nil
	}
	if !blocked {
		return nil
	}
	s.refused.Add(1)
	secs := int64((until.Sub(s.o.Now()) + time.Second - 1) / time.Second)
	return &gateway.Reject{Status: s.o.Status, ReasonID: ReasonTemporarilyBlocked,
		Detail: kind + " " + subject + " blocked until " + until.UTC().Format(time.RFC3339),
		Header: http.Header{"Retry-After": {strconv.FormatInt(max(secs, 1), 10)}}}
}

// Refused returns how many requests the stage refused as blocked.
func (s *BlockStage) Refused() uint64 { return s.refused.Load() }

// FailedOpen returns how many store errors the stage admitted through
// (on_store_error fail_open).
func (s *BlockStage) FailedOpen() uint64 { return s.failOpen.Load() }

var _ gateway.RequestStage = (*BlockStage)(nil)
