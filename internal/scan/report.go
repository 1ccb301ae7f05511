package scan

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Formats WriteReport accepts.
var Formats = []string{"table", "json", "sarif", "html"}

// WriteReport writes the report in the format: table, json, sarif or html.
func WriteReport(w io.Writer, r *Report, format string) error {
	switch format {
	case "table", "":
		return writeTable(w, r)
	case "json":
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(r)
	case "sarif":
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(toSARIF(r))
	case "html":
		return htmlReport.Execute(w, htmlData(r))
	}
	return fmt.Errorf("unknown format %q (formats: %s)", format, strings.Join(Formats, ", "))
}

func writeTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if r.DryRun {
		fmt.Fprintf(tw, "dry run: %d planned requests to %s (nothing sent)\n\n", len(r.Plan), r.Target)
		fmt.Fprintln(tw, "PROBE\tMETHOD\tPATH\tIDENTITY")
		for _, p := range r.Plan {
			id := p.Identity
			if id == "" {
				id = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Probe, p.Method, p.Path, id)
		}
	} else {
		if r.Tool == "" {
			fmt.Fprintf(tw, "moat scan of %s (%s): %d requests, %d findings\n\n", r.Target, r.Spec, r.Requests, len(r.Findings))
		} else {
			fmt.Fprintf(tw, "%s of %s: %d findings\n\n", r.Tool, r.Spec, len(r.Findings))
		}
		if len(r.Findings) > 0 {
			// Reports of other tools (moat lint) have no identities.
			if r.Tool == "" {
				fmt.Fprintln(tw, "SEVERITY\tRULE\tOWASP\tOPERATION\tIDENTITY\tOWNER\tFINDING")
			} else {
				fmt.Fprintln(tw, "SEVERITY\tRULE\tOWASP\tWHERE\tLINE\tFINDING")
			}
			for _, f := range r.Findings {
				op, id, owner := dash(f.Operation), dash(f.Identity), dash(f.Owner)
				sev := strings.ToUpper(f.Severity.String())
				if r.Tool == "" {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sev, f.Rule, f.OWASP, op, id, owner, f.Title)
					continue
				}
				line := "-"
				if f.Line > 0 {
					line = strconv.Itoa(f.Line)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sev, f.Rule, f.OWASP, op, line, f.Message)
			}
			if app := r.ownedBy(OwnerApplication); len(app) > 0 {
				fmt.Fprintf(tw, "\n%d finding(s) remain the application's to fix (the gateway does not close them): %s\n", r.countOwner(OwnerApplication), strings.Join(app, ", "))
			}
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(tw)
		for _, n := range r.Notes {
			fmt.Fprintln(tw, "note:", n)
		}
	}
	return tw.Flush()
}

// SARIF 2.1.0 structures (the subset moat writes).
type sarifLog struct {
	Version string     `json:"version"`
	Schema  string     `json:"$schema"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID                   string            `json:"id"`
	Name                 string            `json:"name"`
	ShortDescription     sarifText         `json:"shortDescription"`
	FullDescription      sarifText         `json:"fullDescription"`
	HelpURI              string            `json:"helpUri,omitempty"`
	Help                 *sarifText        `json:"help,omitempty"`
	DefaultConfiguration map[string]string `json:"defaultConfiguration"`
	Properties           map[string]any    `json:"properties"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifText         `json:"message"`
	Locations           []sarifLocation   `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Properties          map[string]any    `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation *sarifPhysical `json:"physicalLocation,omitempty"`
	LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation struct {
		URI string `json:"uri"`
	} `json:"artifactLocation"`
	Region *struct {
		StartLine int `json:"startLine"`
	} `json:"region,omitempty"`
}

type sarifLogical struct {
	FullyQualifiedName string `json:"fullyQualifiedName"`
	Kind               string `json:"kind"`
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ownedBy returns the rule IDs of the findings with the owner, each once,
// in order of first appearance.
func (r *Report) ownedBy(owner string) []string {
	var ids []string
	seen := map[string]bool{}
	for _, f := range r.Findings {
		if f.Owner == owner && !seen[f.Rule] {
			seen[f.Rule] = true
			ids = append(ids, f.Rule)
		}
	}
	return ids
}

func (r *Report) countOwner(owner string) int {
	n := 0
	for _, f := range r.Findings {
		if f.Owner == owner {
			n++
		}
	}
	return n
}

func toSARIF(r *Report) sarifLog {
	d := sarifDriver{Name: "moat-scan", InformationURI: "https://github.com/moat-gateway/moat/blob/main/docs/scan.md"}
	rules := Rules
	if r.Tool != "" {
		d.Name = r.Tool
		d.InformationURI = "https://github.com/moat-gateway/moat/blob/main/docs/" + strings.TrimPrefix(r.Tool, "moat-") + ".md"
	}
	if r.Rules != nil {
		rules = r.Rules
	}
	index := map[string]int{}
	for i, rule := range rules {
		index[rule.ID] = i
		tags := []string{"security"}
		if rule.OWASP != "" {
			tags = append(tags, "owasp-api-top10-2023", rule.OWASP)
		}
		props := map[string]any{"tags": tags}
		if rule.Owner != "" {
			props["owner"] = rule.Owner
		}
		sr := sarifRule{
			ID: rule.ID, Name: pascalCase(rule.ID),
			ShortDescription: sarifText{rule.Name}, FullDescription: sarifText{rule.Description}, HelpURI: rule.HelpURI,
			DefaultConfiguration: map[string]string{"level": "warning"},
			Properties:           props,
		}
		if rule.Remediation != "" {
			sr.Help = &sarifText{rule.Remediation}
		}
		d.Rules = append(d.Rules, sr)
	}
	results := []sarifResult{}
	for _, f := range r.Findings {
		msg := f.Title + ": " + f.Message
		if f.URL != "" {
			msg += " Request: " + f.Method + " " + f.URL
			if f.Identity != "" {
				msg += " as " + f.Identity
			}
			msg += "."
		}
		loc := sarifLocation{PhysicalLocation: &sarifPhysical{}}
		loc.PhysicalLocation.ArtifactLocation.URI = f.specURI(r.Spec)
		if f.Line > 0 {
			loc.PhysicalLocation.Region = &struct {
				StartLine int `json:"startLine"`
			}{f.Line}
		}
		if f.Operation != "" {
			loc.LogicalLocations = []sarifLogical{{FullyQualifiedName: f.Operation, Kind: "function"}}
		}
		props := map[string]any{"severity": f.Severity.String()}
		if f.OWASP != "" {
			props["owasp"] = f.OWASP
		}
		if f.Owner != "" {
			props["owner"] = f.Owner
		}
		if f.Evidence != "" {
			props["evidence"] = f.Evidence
		}
		results = append(results, sarifResult{
			RuleID: f.Rule, RuleIndex: index[f.Rule], Level: f.Severity.sarifLevel(), Message: sarifText{msg},
			Locations: []sarifLocation{loc}, PartialFingerprints: map[string]string{"moatFinding/v1": f.fingerprint()},
			Properties: props,
		})
	}
	return sarifLog{
		Version: "2.1.0",
		Schema:  "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
		Runs:    []sarifRun{{Tool: sarifTool{Driver: d}, Results: results}},
	}
}

func (f *Finding) specURI(spec string) string {
	return strings.TrimPrefix(strings.ReplaceAll(spec, "\\", "/"), "./")
}

type htmlFinding struct {
	Finding
	Sev string
}

func htmlData(r *Report) map[string]any {
	counts := map[string]int{}
	var fs []htmlFinding
	for _, f := range r.Findings {
		counts[f.Severity.String()]++
		fs = append(fs, htmlFinding{f, f.Severity.String()})
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Severity > fs[j].Severity })
	sevs := []string{"critical", "high", "medium", "low"}
	if counts["info"] > 0 {
		sevs = append(sevs, "info")
	}
	return map[string]any{"R": r, "Findings": fs, "Counts": counts, "Sevs": sevs}
}

//go:embed report.html
var htmlSource string

var htmlReport = template.Must(template.New("report").Parse(htmlSource))

// pascalCase turns a rule ID such as bola-object-access into BolaObjectAccess,
// the SARIF convention for rule names. IDs are ASCII.
func pascalCase(id string) string {
	var b strings.Builder
	for _, w := range strings.Split(id, "-") {
		if w == "" {
			continue
		}
		b.WriteString(strings.ToUpper(w[:1]))
		b.WriteString(w[1:])
	}
	return b.String()
}
