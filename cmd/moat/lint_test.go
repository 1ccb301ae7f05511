package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const lintFixture = `
listeners: [{address: "127.0.0.1:0"}]
upstreams: {a: {targets: ["http://127.0.0.1:9"]}}
routes:
  - {name: open, path: /o, methods: [GET], upstream: a, public: true}
`

func TestLintExitCodes(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(cfg, []byte(lintFixture), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("routes: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sarif := filepath.Join(dir, "lint.sarif")
	tests := []struct {
		desc    string
		args    []string
		code    int
		outHas  string
		fileHas string
	}{
		{desc: "medium findings at default fail-on", args: []string{cfg}, code: exitFindings, outHas: "waf-off"},
		{desc: "below high", args: []string{cfg, "--fail-on", "high", "--format", "json"}, code: exitOK, outHas: `"tool": "moat-lint"`},
		{desc: "info counts with fail-on info", args: []string{cfg, "--fail-on", "info"}, code: exitFindings, outHas: "public-route"},
		{desc: "sarif to a file", args: []string{cfg, "--format", "sarif", "-o", sarif, "--fail-on", "critical"}, code: exitOK, fileHas: `"name": "moat-lint"`},
		{desc: "bad fail-on", args: []string{cfg, "--fail-on", "severe"}, code: exitUsage},
		{desc: "bad format", args: []string{cfg, "--format", "xml"}, code: exitUsage},
		{desc: "invalid configuration", args: []string{bad}, code: exitUsage},
		{desc: "missing file", args: []string{filepath.Join(dir, "none.yaml")}, code: exitUsage},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := lintCmd()
			var out, errOut bytes.Buffer
			c.SetOut(&out)
			c.SetErr(&errOut)
			c.SetArgs(tc.args)
			err := c.Execute()
			code := exitOK
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
			} else if err != nil {
				t.Fatalf("error without exit code: %v", err)
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d (err %v)\n%s", code, tc.code, err, out.String())
			}
			if tc.outHas != "" && !strings.Contains(out.String(), tc.outHas) {
				t.Errorf("output lacks %q:\n%s", tc.outHas, out.String())
			}
			if tc.fileHas != "" {
				b, err := os.ReadFile(sarif)
				if err != nil || !strings.Contains(string(b), tc.fileHas) {
					t.Errorf("report file lacks %q: %v", tc.fileHas, err)
				}
			}
		})
	}
}

// TestLintExample pins the posture of examples/vulnapi.moat.yaml: only its
// deliberately public search route is reported.
func TestLintExample(t *testing.T) {
	t.Setenv("MOAT_AUDIT_KEY", "test-audit-key-0123456789abcdef0123456789")
	c := lintCmd()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs([]string{"../../examples/vulnapi.moat.yaml", "--fail-on", "low"})
	if err := c.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "1 findings") || !strings.Contains(out.String(), "public-route") {
		t.Errorf("unexpected report:\n%s", out.String())
	}
}
