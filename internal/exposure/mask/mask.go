// Package mask finds personal data and secrets in response bodies and masks
// them, or decides that the response must be blocked.
//
// A Masker is compiled once from config.Masking by New and is safe for
// concurrent use. MaskJSON rewrites a JSON document string by string,
// preserving everything it does not change byte for byte (key order, number
// text, whitespace, escapes); MaskText rewrites any other textual body. Both
// return Findings that name the detector, the JSON pointer and the action,
// never the matched value. docs/masking.md describes what each detector
// matches.
package mask

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Reason IDs returned by Reject and documented in docs/reasons.md.
const (
	// ReasonSensitiveDataBlocked (502): the response contained data whose
	// detector or field rule has the action block.
	ReasonSensitiveDataBlocked = "sensitive_data_blocked"
	// ReasonResponseUnscannable (502): the response was larger than
	// max_body (with oversize: block) or, for the caller's choice, not
	// parseable as the JSON it claimed to be.
	ReasonResponseUnscannable = "response_unscannable"
)

// Actions recorded in a Finding.
const (
	ActionMask   = config.MaskingActionMask
	ActionBlock  = config.MaskingActionBlock
	ActionLog    = config.MaskingActionLog
	ActionRemove = config.MaskingActionRemove
)

// Pseudo-detector names used in Findings that no pattern produced.
const (
	// DetectorField marks a finding produced by a field rule.
	DetectorField = "field"
	// DetectorOversize marks a body larger than max_body: Action is log
	// (oversize: pass) or block (oversize: block).
	DetectorOversize = "oversize"
)

// MaxFindings bounds the findings returned for one body. Past it only a
// first block finding is still added, so Blocked stays exact.
const MaxFindings = 100

// MaxDepth is the deepest JSON nesting MaskJSON accepts; deeper documents
// are an error.
const MaxDepth = 10000

// ErrInvalidJSON is wrapped by the error MaskJSON returns for a body that is
// not one valid JSON document.
var ErrInvalidJSON = errors.New("invalid json")

// Finding is one thing a Masker found. It never holds the matched value.
type Finding struct {
	Detector string // detector name (card, email, jwt...), DetectorField or DetectorOversize
	Path     string // RFC 6901 JSON pointer of the value ("" for the root and for text bodies)
	Action   string // mask, block, log or remove
}

// Blocked reports whether any finding has the action block: the response
// must not reach the client.
func Blocked(findings []Finding) bool {
	for _, f := range findings {
		if f.Action == ActionBlock {
			return true
		}
	}
	return false
}

// Masker holds a compiled masking configuration. It is immutable after New
// and safe for concurrent use.
type Masker struct {
	enabled [numDetectors]bool
	action  [numDetectors]string
	trigger [256]bool // bytes at which some enabled detector may start
	full    bool      // style full
	fields  map[string]string
	// fieldFirst marks the bytes a member name with a field rule can start
	// with (the rule's first letter in both cases, '_' and '-'), so most
	// names skip the map lookup.
	fieldFirst [256]bool
	maxBody    int64
	oversize   string // config.MaskingOversizePass or Block
}

// New compiles cfg (defaults are applied to a copy; cfg is not changed) and
// returns an error naming every problem of an invalid configuration.
func New(cfg config.Masking) (*Masker, error) {
	cfg.Fields = append([]config.MaskingField(nil), cfg.Fields...)
	cfg.ApplyDefaults()
	if probs := cfg.Validate("masking"); len(probs) > 0 {
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = p.Path + ": " + p.Msg
		}
		return nil, fmt.Errorf("building masking: %s", strings.Join(msgs, "; "))
	}
	m := &Masker{
		full:     cfg.Style == config.MaskingStyleFull,
		maxBody:  int64(cfg.MaxBody),
		oversize: cfg.Oversize,
	}
	for _, name := range cfg.Detectors {
		for _, d := range config.MaskingGroup(name) {
			m.enabled[detectorID(d)] = true
		}
	}
	for i := range m.action {
		m.action[i] = ActionMask
	}
	// Groups first, then single detectors, so a detector name wins.
	for _, group := range []string{config.MaskingGroupAll, config.MaskingGroupPII, config.MaskingGroupSecrets} {
		if a, ok := cfg.Actions[group]; ok {
			for _, d := range config.MaskingGroup(group) {
				m.action[detectorID(d)] = a
			}
		}
	}
	for name, a := range cfg.Actions {
		if g := config.MaskingGroup(name); len(g) == 1 && g[0] == name {
			m.action[detectorID(name)] = a
		}
	}
	if len(cfg.Fields) > 0 {
		m.fields = make(map[string]string, len(cfg.Fields))
		m.fieldFirst['_'], m.fieldFirst['-'] = true, true
		for _, f := range cfg.Fields {
			n := config.NormalizeMaskingField(f.Name)
			m.fields[n] = f.Action
			m.fieldFirst[n[0]] = true
			if n[0] >= 'a' && n[0] <= 'z' {
				m.fieldFirst[n[0]-'a'+'A'] = true
			}
		}
	}
	for d := range numDetectors {
		if m.enabled[d] {
			for _, b := range detectors[d].triggers {
				m.trigger[b] = true
			}
		}
	}
	return m, nil
}

// MaxBody returns the largest body the Masker scans. A response stage
// buffers at most MaxBody+1 bytes to learn whether a body is oversize.
func (m *Masker) MaxBody() int64 { return m.maxBody }

// OversizeFinding returns the finding for a body larger than MaxBody: its
// Action is block when oversize is block, log otherwise. A response stage
// that does not buffer an oversize body records this finding instead of
// calling MaskJSON or MaskText.
func (m *Masker) OversizeFinding() Finding {
	if m.oversize == config.MaskingOversizeBlock {
		return Finding{Detector: DetectorOversize, Action: ActionBlock}
	}
	return Finding{Detector: DetectorOversize, Action: ActionLog}
}

// MaskText masks every match in a textual body (text/plain, HTML, CSV, XML
// or any body that is not parsed as JSON). It returns body itself when
// nothing changes, and a nil out when the findings block the response. A
// body larger than MaxBody is returned unscanned with OversizeFinding.
func (m *Masker) MaskText(body []byte) (out []byte, findings []Finding) {
	if int64(len(body)) > m.maxBody {
		f := m.OversizeFinding()
		if f.Action == ActionBlock {
			return nil, []Finding{f}
		}
		return body, []Finding{f}
	}
	var fs findingList
	matches := m.scan(body, nil)
	if len(matches) == 0 {
		return body, nil
	}
	masked := false
	for _, mt := range matches {
		a := m.action[mt.det]
		fs.add(Finding{Detector: detectors[mt.det].name, Action: a})
		masked = masked || a == ActionMask
	}
	if fs.blocked {
		return nil, fs.list
	}
	if !masked {
		return body, fs.list
	}
	return m.apply(make([]byte, 0, len(body)), body, matches), fs.list
}

// Reject returns the rejection for findings that block a response: 502
// response_unscannable for an oversize body, 502 sensitive_data_blocked
// otherwise. Its Detail names the detectors and paths, never values. It
// returns nil when Blocked(findings) is false.
func Reject(findings []Finding) *gateway.Reject {
	var parts []string
	reason := ReasonSensitiveDataBlocked
	for _, f := range findings {
		if f.Action != ActionBlock {
			continue
		}
		if f.Detector == DetectorOversize {
			reason = ReasonResponseUnscannable
		}
		parts = append(parts, f.Detector+" at "+pointerOrRoot(f.Path))
	}
	if len(parts) == 0 {
		return nil
	}
	return &gateway.Reject{Status: http.StatusBadGateway, ReasonID: reason, Detail: "response blocked: " + strings.Join(parts, ", ")}
}

func pointerOrRoot(p string) string {
	if p == "" {
		return "body"
	}
	return p
}

// findingList collects findings up to MaxFindings, keeping Blocked exact.
type findingList struct {
	list    []Finding
	blocked bool
}

// keeps reports whether add would list a finding with action.
func (l *findingList) keeps(action string) bool {
	return len(l.list) < MaxFindings || (action == ActionBlock && !l.blocked)
}

func (l *findingList) add(f Finding) {
	isBlock := f.Action == ActionBlock
	if len(l.list) < MaxFindings || (isBlock && !l.blocked) {
		l.list = append(l.list, f)
	}
	l.blocked = l.blocked || isBlock
}
