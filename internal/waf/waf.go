// Package waf is the web application firewall stage: Coraza running the OWASP
// Core Rule Set (CRS), embedded in the binary, in anomaly-scoring mode.
//
// A Stage inspects the request line, headers and body (the body buffer is the
// one every stage shares, read with Exchange.ReadBody) and refuses a request
// whose anomaly score reaches the inbound threshold with 403 waf_blocked.
// With response_body on, its ResponseStage inspects upstream responses too.
// Matched rule IDs and scores are recorded on the exchange for logs and
// audit; the matched data is not, since it may hold credentials.
//
// An error or a panic inside the WAF fails closed: 500 waf_error.
package waf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Reasons the WAF refuses requests with.
const (
	// ReasonBlocked (403): the request (or, with response_body, the
	// response) reached the anomaly threshold, or a rule denied it.
	ReasonBlocked = "waf_blocked"
	// ReasonUninspectable (400): the WAF cannot inspect the whole request:
	// the body does not parse as its content type says (JSON, XML,
	// urlencoded, multipart), it has more arguments than max_arguments, or
	// the URI does not parse.
	ReasonUninspectable = "waf_uninspectable"
	// ReasonError (500): the WAF failed (an engine error or a panic); the
	// request is refused rather than passed uninspected.
	ReasonError = "waf_error"
)

// Keys of the findings the stage records with Exchange.Note.
const (
	NoteRuleIDs       = "waf_rule_ids"       // []int: matched rules that log, sorted
	NoteScore         = "waf_score"          // int: inbound anomaly score
	NoteOutboundScore = "waf_outbound_score" // int: outbound anomaly score (response_body only)
	NoteAttacks       = "waf_attacks"        // []string: attack categories of the matches (sqli, xss, rce, ...)
	NoteWouldBlock    = "waf_would_block"    // bool, detect mode only: block mode would have refused it
	NoteUninspected   = "waf_response_uninspected"
)

// Stage is the WAF of one route. It is built by New, immutable afterwards
// and safe for concurrent use; each request gets its own Coraza transaction,
// which is not.
type Stage struct {
	eng      *engine
	detect   bool
	maxBody  int64 // 0: the route's max_body
	inbound  int
	outbound int
	response *responseStage
	log      *slog.Logger

	// newTx starts a transaction; tests replace it to inject faults.
	newTx func(id string) types.Transaction

	// open hands a request's transaction to the response stage
	// (*gateway.Exchange -> types.Transaction); only with response_body.
	open      sync.Map
	closeOnce sync.Once
}

// New builds the WAF stage for cfg (defaults are applied to a copy; cfg is
// not changed). It returns (nil, nil) when cfg is nil or disabled.
//
// Stages whose configurations compile to the same rules share one Coraza
// engine, built by the first and released by the last Close: building the
// CRS takes hundreds of milliseconds. Every stage New returns must be closed
// (when its Gateway is closed, or when the build it belongs to fails).
//
// New returns an error for an invalid configuration, SecLang in the expert
// fields that does not compile, and exclusions that name rules or tags the
// CRS does not have.
func New(cfg *config.WAF, log *slog.Logger) (*Stage, error) {
	if !cfg.IsOn() {
		return nil, nil
	}
	c := *cfg
	c.ApplyDefaults()
	cfg = &c
	if probs := cfg.Validate(""); len(probs) > 0 {
		errs := make([]error, len(probs))
		for i, p := range probs {
			errs[i] = fmt.Errorf("%s: %s", p.Path, p.Msg)
		}
		return nil, errors.Join(errs...)
	}
	if log == nil {
		log = slog.Default()
	}
	set := settingsOf(cfg)
	eng, err := acquire(&set)
	if err != nil {
		return nil, err
	}
	s := &Stage{
		eng: eng, detect: set.detect, maxBody: int64(cfg.MaxRequestBody),
		inbound: cfg.InboundAnomalyThreshold, outbound: cfg.OutboundAnomalyThreshold, log: log,
	}
	s.newTx = func(id string) types.Transaction {
		if id == "" {
			return eng.waf.NewTransaction()
		}
		return eng.waf.NewTransactionWithID(id)
	}
	if cfg.ResponseBody {
		s.response = &responseStage{s: s, limit: int64(cfg.ResponseBodyLimit)}
	}
	return s, nil
}

// ResponseStage returns the stage that inspects this route's upstream
// responses, or nil when response_body is off. Add it to the route's
// response stages; it needs the request stage to have run first.
func (s *Stage) ResponseStage() gateway.ResponseStage {
	if s.response == nil {
		return nil
	}
	return s.response
}

// Close releases the stage's share of the Coraza engine. Requests in flight
// finish normally. Close is idempotent.
func (s *Stage) Close() {
	s.closeOnce.Do(func() { release(s.eng) })
}

// ProcessRequest runs the request phases of the CRS on ex: connection,
// request line, headers, then the body (read once with ex.ReadBody, shared
// with the other stages). It returns nil to let the request through, a 403
// waf_blocked or 400 waf_uninspectable *gateway.Reject, a 413
// body_too_large *gateway.Reject for a body over max_request_body (or the
// body errors of ex.ReadBody), and a 500 waf_error *gateway.Reject when the
// WAF itself fails. Findings are noted on ex in both modes.
func (s *Stage) ProcessRequest(_ context.Context, ex *gateway.Exchange) (err error) {
	var tx types.Transaction
	handedOver := false
	defer func() {
		if p := recover(); p != nil {
			err = s.fail(ex, "request", fmt.Errorf("panic: %v", p))
			handedOver = false
		}
		if tx != nil && !handedOver {
			s.finish(ex, tx)
		}
	}()
	tx = s.newTx(ex.ID)

	it, err := s.inspectRequest(ex, tx)
	if err != nil {
		var rej *gateway.Reject
		if errors.As(err, &rej) {
			return rej
		}
		return s.fail(ex, "request", err)
	}
	if err := s.decide(ex, tx, it, false); err != nil {
		return err
	}
	if s.response != nil {
		s.open.Store(ex, tx)
		ex.OnDone(func() {
			s.open.Delete(ex)
			s.finish(ex, tx)
		})
		handedOver = true
	}
	return nil
}

// inspectRequest feeds the request to tx, as Coraza's http middleware does,
// and returns the interruption, if any. The body comes from the exchange's
// shared buffer, never from Request.Body.
func (s *Stage) inspectRequest(ex *gateway.Exchange, tx types.Transaction) (*types.Interruption, error) {
	r := ex.Request
	client := ""
	if ex.ClientIP.IsValid() {
		client = ex.ClientIP.Unmap().String()
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr().Unmap().String()
	}
	server, sport := "", 0
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			server, sport = ap.Addr().Unmap().String(), int(ap.Port())
		}
	}
	tx.ProcessConnection(client, 0, server, sport)

	uri := r.RequestURI // as the client sent it: the rules look at the raw encoding
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	tx.ProcessURI(uri, r.Method, r.Proto)
	for k, vs := range r.Header {
		for _, v := range vs {
			tx.AddRequestHeader(k, v)
		}
	}
	// net/http moves Host and Transfer-Encoding out of Header; rules look
	// for both (920280 missing Host, 920290 empty Host, 920171 smuggling).
	// net/http refuses HTTP/1.1 without Host, so an empty r.Host there is
	// an empty Host header; in HTTP/1.0 it means none was sent.
	if r.Host != "" || r.ProtoAtLeast(1, 1) {
		tx.AddRequestHeader("Host", r.Host)
		tx.SetServerName(hostOnly(r.Host))
	}
	for _, te := range r.TransferEncoding {
		tx.AddRequestHeader("Transfer-Encoding", te)
	}
	if it := tx.ProcessRequestHeaders(); it != nil {
		return it, nil
	}

	body, err := ex.ReadBody()
	if err != nil {
		return nil, err // a *gateway.Reject: 413 or 400, not a WAF failure
	}
	limit := s.maxBody
	if limit == 0 {
		limit = engineBodyLimit // the route's cap applies; Coraza's cannot be exceeded
	}
	if int64(len(body)) > limit {
		return nil, gateway.Rejectf(http.StatusRequestEntityTooLarge, gateway.ReasonBodyTooLarge,
			"body of %d bytes over the WAF's inspection limit %d", len(body), limit)
	}
	if len(body) > 0 {
		it, _, err := tx.WriteRequestBody(body)
		if err != nil {
			return nil, fmt.Errorf("writing the request body to the WAF: %w", err)
		}
		if it != nil {
			return it, nil
		}
	}
	it, err := tx.ProcessRequestBody()
	if err != nil {
		return nil, fmt.Errorf("processing the request body: %w", err)
	}
	return it, nil
}

// decide records the findings of tx on ex and turns an interruption into a
// Reject. In detect mode the engine never interrupts.
func (s *Stage) decide(ex *gateway.Exchange, tx types.Transaction, it *types.Interruption, response bool) error {
	f := s.record(ex, tx, response)
	if it == nil {
		return nil
	}
	if !response && uninspectable(it.RuleID) {
		return &gateway.Reject{Status: http.StatusBadRequest, ReasonID: ReasonUninspectable,
			Detail: fmt.Sprintf("rule %d: the request cannot be inspected in full", it.RuleID)}
	}
	what, score, threshold := "request", f.inbound, s.inbound
	if response {
		what, score, threshold = "response", f.outbound, s.outbound
	}
	return &gateway.Reject{Status: http.StatusForbidden, ReasonID: ReasonBlocked,
		Detail: fmt.Sprintf("%s blocked by rule %d (%s): anomaly score %d, threshold %d, rules %s",
			what, it.RuleID, it.Action, score, threshold, joinInts(f.ids))}
}

// fail logs a failure of the WAF itself and returns the fail-closed verdict.
func (s *Stage) fail(ex *gateway.Exchange, phase string, err error) error {
	s.log.Error("waf failed; refusing the request", "request_id", ex.ID, "phase", phase, "error", err)
	return &gateway.Reject{Status: http.StatusInternalServerError, ReasonID: ReasonError,
		Detail: "waf failed during the " + phase + " phase", Err: err}
}

// finish runs the logging phase and returns the transaction to Coraza. A
// panic here is logged, not propagated: the verdict is already made.
func (s *Stage) finish(ex *gateway.Exchange, tx types.Transaction) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("waf panicked while closing a transaction", "request_id", ex.ID, "panic", fmt.Sprint(p))
		}
	}()
	tx.ProcessLogging()
	if err := tx.Close(); err != nil {
		s.log.Warn("closing a waf transaction", "request_id", ex.ID, "error", err)
	}
}

// hostOnly strips the port from a Host value.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return strings.Trim(host, "[]")
	}
	return strings.Trim(h, "[]")
}

// Interface guards.
var (
	_ gateway.RequestStage  = (*Stage)(nil)
	_ gateway.ResponseStage = (*responseStage)(nil)
)
