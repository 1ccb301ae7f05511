package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-gateway/moat/internal/scan"
)

// exitFindings is moat scan's exit code when findings reach --fail-on
// (docs/scan.md).
const exitFindings = 5

// scanCmd is moat scan: an active scanner for an API described by an
// OpenAPI document.
func scanCmd() *cobra.Command {
	var (
		o        scan.Options
		specPath string
		auths    []string
		admins   []string
		format   string
		output   string
		failOn   string
	)
	c := &cobra.Command{
		Use:   "scan --target URL --spec openapi.yaml [--auth NAME=HEADER: VALUE ...]",
		Short: "Probe an API for OWASP API Top 10 problems",
		Long: "Probe one target host, guided by its OpenAPI 3.0/3.1 document, for broken object and function\n" +
			"level authorization, authentication gaps, data exposure, missing rate limits, injection error\n" +
			"signatures, SSRF, misconfiguration, undocumented endpoints and weak JWTs. Only the target host is\n" +
			"contacted; POST, PUT, PATCH and DELETE are sent only with --allow-destructive. See docs/scan.md.\n" +
			"Exit codes: 0 no finding at --fail-on or above, 1 runtime error, 2 usage, 5 findings at --fail-on or above.",
		Example: "  moat scan --target https://api.example.com --spec openapi.yaml \\\n" +
			"    --auth alice='Authorization: Bearer eyJ...' --auth bob='X-API-Key: k2' --format sarif --output scan.sarif",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Target == "" || specPath == "" {
				return &exitError{exitUsage, errors.New("--target and --spec are required")}
			}
			fail, err := scan.ParseSeverity(failOn)
			if err != nil {
				return &exitError{exitUsage, fmt.Errorf("--fail-on: %v", err)}
			}
			if !scanContains(scan.Formats, format) {
				return &exitError{exitUsage, fmt.Errorf("--format %q: want table, json, sarif or html", format)}
			}
			if o.Rate <= 0 || o.MaxRequests <= 0 {
				return &exitError{exitUsage, errors.New("--rate and --max-requests must be positive")}
			}
			for _, a := range auths {
				id, err := scan.ParseIdentity(a)
				if err != nil {
					return &exitError{exitUsage, fmt.Errorf("--auth: %v", err)}
				}
				o.Identities = append(o.Identities, id)
			}
			for _, name := range admins {
				found := false
				for i := range o.Identities {
					if o.Identities[i].Name == name {
						o.Identities[i].Admin, found = true, true
					}
				}
				if !found {
					return &exitError{exitUsage, fmt.Errorf("--admin %s: no --auth identity of that name", name)}
				}
			}
			spec, err := scan.LoadSpec(specPath)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			o.Spec = spec
			stderr := cmd.ErrOrStderr()
			o.Progress = stderr
			if f, ok := stderr.(*os.File); ok {
				if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
					o.ProgressTTY = true
				}
			}
			ctx, stop := signalContext()
			defer stop()
			rep, err := scan.Run(ctx, o)
			if err != nil {
				return &exitError{exitUsage, fmt.Errorf("moat scan: %v", err)}
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
					_ = scan.WriteReport(stderr, rep, "table")
				}
			} else if _, err := cmd.OutOrStdout().Write(buf.Bytes()); err != nil {
				return &exitError{exitRuntime, err}
			}
			if !rep.DryRun {
				if n := rep.Count(fail); n > 0 {
					return &exitError{exitFindings, fmt.Errorf("moat scan: %d finding(s) at %s or above", n, fail)}
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.Target, "target", "", "base URL of the API to scan (the only host contacted)")
	f.StringVar(&specPath, "spec", "", "OpenAPI 3.0 or 3.1 document of the API (YAML or JSON)")
	f.StringArrayVar(&auths, "auth", nil, "identity as NAME=HEADER: VALUE (repeatable; give two for BOLA)")
	f.StringArrayVar(&admins, "admin", nil, "mark the named identity as admin (repeatable)")
	f.BoolVar(&o.AllowDestructive, "allow-destructive", false, "allow POST, PUT, PATCH and DELETE (writes data)")
	f.BoolVar(&o.DryRun, "dry-run", false, "list the planned requests without sending any")
	f.IntVar(&o.MaxRequests, "max-requests", 500, "most requests the scan sends (redirect hops and TLS handshakes included)")
	f.Float64Var(&o.Rate, "rate", 10, "most requests per second")
	f.DurationVar(&o.RequestTimeout, "request-timeout", 10*time.Second, "timeout of each request")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "timeout of the whole scan")
	f.StringSliceVar(&o.Probes, "probes", nil, "run only these probes (comma-separated; see docs/scan.md)")
	f.BoolVar(&o.Insecure, "insecure", false, "do not verify the target's TLS certificate")
	f.StringVar(&o.CanaryAddr, "canary-addr", "127.0.0.1:0", "listen address of the SSRF canary")
	f.DurationVar(&o.SSRFWait, "ssrf-wait", 2*time.Second, "how long to wait for the target to fetch the SSRF canary")
	f.IntVar(&o.Burst, "burst", 30, "requests in the rate-limit probe's burst")
	f.StringVar(&format, "format", "table", "report format: table, json, sarif or html")
	f.StringVarP(&output, "output", "o", "", "write the report to FILE instead of stdout")
	f.StringVar(&failOn, "fail-on", "high", "exit 5 when a finding reaches this severity: low, medium, high or critical")
	return c
}

func scanContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
