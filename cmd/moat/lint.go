package main

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-gateway/moat/internal/lint"
	"github.com/moat-gateway/moat/internal/scan"
)

// lintCmd is moat lint: the gateway's own security posture, read from its
// configuration file (docs/lint.md).
func lintCmd() *cobra.Command {
	var format, output, failOn string
	c := &cobra.Command{
		Use:   "lint moat.yaml",
		Short: "Report weaknesses of the gateway's security posture from its configuration",
		Long: "Read a moat configuration (validated as moat serve does) and report public routes, routes\n" +
			"without rate limits, WAF off or detection-only on public routes, CORS too wide, short HMAC\n" +
			"secrets, plain-text listeners, HSTS off, response masking off, allow_any_authenticated routes,\n" +
			"no audit trail and no admin listener. Nothing is started and no request is sent. See docs/lint.md.\n" +
			"Exit codes: 0 no finding at --fail-on or above, 1 runtime error, 2 usage or invalid configuration,\n" +
			"5 findings at --fail-on or above.",
		Example: "  moat lint moat.yaml\n  moat lint moat.yaml --format sarif --output lint.sarif --fail-on medium",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fail, err := scan.ParseSeverity(failOn)
			if err != nil {
				return &exitError{exitUsage, fmt.Errorf("--fail-on: %v", err)}
			}
			if !scanContains(scan.Formats, format) {
				return &exitError{exitUsage, fmt.Errorf("--format %q: want table, json, sarif or html", format)}
			}
			rep, err := lint.Load(args[0], time.Now())
			if err != nil {
				return &exitError{exitUsage, err}
			}
			var buf bytes.Buffer
			if err := scan.WriteReport(&buf, rep, format); err != nil {
				return &exitError{exitRuntime, err}
			}
			if output != "" {
				if err := os.WriteFile(output, buf.Bytes(), 0o644); err != nil {
					return &exitError{exitRuntime, fmt.Errorf("writing report: %v", err)}
				}
				if format != "table" {
					_ = scan.WriteReport(cmd.ErrOrStderr(), rep, "table")
				}
			} else if _, err := cmd.OutOrStdout().Write(buf.Bytes()); err != nil {
				return &exitError{exitRuntime, err}
			}
			if n := rep.Count(fail); n > 0 {
				return &exitError{exitFindings, fmt.Errorf("moat lint: %d finding(s) at %s or above", n, fail)}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&format, "format", "table", "report format: table, json, sarif or html")
	f.StringVarP(&output, "output", "o", "", "write the report to FILE instead of stdout")
	f.StringVar(&failOn, "fail-on", "medium", "exit 5 when a finding reaches this severity: info, low, medium, high or critical")
	return c
}
