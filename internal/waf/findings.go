package waf

import (
	"sort"
	"strconv"
	"strings"

	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/moat-gateway/moat/internal/gateway"
)

// findings summarizes what a transaction matched so far.
type findings struct {
	ids      []int
	attacks  []string
	inbound  int
	outbound int
}

// loggable is implemented by Coraza's matched rules: rules marked nolog
// (CRS bookkeeping such as 901xxx initialization) are not findings.
type loggable interface{ Log() bool }

// withVariables is implemented by Coraza's transactions; it gives access to
// the TX collection, where the CRS keeps its anomaly scores.
type withVariables interface {
	Variables() plugintypes.TransactionVariables
}

// record computes the findings of tx and notes them on ex: nothing when
// nothing matched, so clean requests cost no map. It never records matched
// data or messages, which may hold what the client sent (credentials
// included).
func (s *Stage) record(ex *gateway.Exchange, tx types.Transaction, response bool) findings {
	var f findings
	derived := [2]int{} // inbound, outbound; used when TX variables are not reachable
	for _, mr := range tx.MatchedRules() {
		if l, ok := mr.(loggable); ok && !l.Log() {
			continue
		}
		r := mr.Rule()
		if r.ID() == 0 {
			continue
		}
		f.ids = append(f.ids, r.ID())
		out := r.Phase() >= types.PhaseResponseHeaders && r.Phase() <= types.PhaseResponseBody
		for _, t := range r.Tags() {
			if a, ok := strings.CutPrefix(t, "attack-"); ok {
				f.attacks = append(f.attacks, a)
			}
		}
		if out {
			derived[1] += severityScore(r.Severity())
		} else {
			derived[0] += severityScore(r.Severity())
		}
	}
	f.inbound, f.outbound = derived[0], derived[1]
	if st, ok := tx.(withVariables); ok {
		f.inbound = txInt(st, "blocking_inbound_anomaly_score")
		f.outbound = txInt(st, "blocking_outbound_anomaly_score")
	}
	if len(f.ids) == 0 && f.inbound == 0 && f.outbound == 0 {
		return f
	}
	f.ids = sortedUnique(f.ids)
	sort.Strings(f.attacks)
	f.attacks = compactStrings(f.attacks)
	ex.Note(NoteRuleIDs, f.ids)
	ex.Note(NoteScore, f.inbound)
	if len(f.attacks) > 0 {
		ex.Note(NoteAttacks, f.attacks)
	}
	if response {
		ex.Note(NoteOutboundScore, f.outbound)
	}
	if s.detect && s.wouldBlock(f, response) {
		ex.Note(NoteWouldBlock, true)
	}
	return f
}

// wouldBlock reports whether block mode would have refused an exchange with
// these findings: a score at a threshold, or a request it cannot inspect.
func (s *Stage) wouldBlock(f findings, response bool) bool {
	if f.inbound >= s.inbound || response && f.outbound >= s.outbound {
		return true
	}
	for _, id := range f.ids {
		if uninspectable(id) {
			return true
		}
	}
	return false
}

// severityScore is the CRS anomaly score of a rule severity
// (tx.critical_anomaly_score and its siblings, CRS defaults).
func severityScore(s types.RuleSeverity) int {
	switch s {
	case types.RuleSeverityEmergency, types.RuleSeverityAlert, types.RuleSeverityCritical:
		return 5
	case types.RuleSeverityError:
		return 4
	case types.RuleSeverityWarning:
		return 3
	case types.RuleSeverityNotice:
		return 2
	}
	return 0
}

func txInt(st withVariables, name string) int {
	v := st.Variables().TX().Get(name)
	if len(v) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(v[0])
	return n
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func joinInts(ids []int) string {
	if len(ids) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(id))
	}
	return b.String()
}
