package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// leakyAPI answers everything 200 with a card number and no headers.
func leakyAPI() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id": 1, "card": "4111111111111111"}`))
	}))
}

func TestScanExitCodes(t *testing.T) {
	srv := leakyAPI()
	defer srv.Close()
	spec := "../../internal/scan/testdata/api.yaml"
	tests := []struct {
		desc string
		args []string
		code int
	}{
		{"missing target", []string{"--spec", spec}, exitUsage},
		{"bad fail-on", []string{"--target", srv.URL, "--spec", spec, "--fail-on", "severe"}, exitUsage},
		{"bad auth", []string{"--target", srv.URL, "--spec", spec, "--auth", "alice"}, exitUsage},
		{"findings at high", []string{"--target", srv.URL, "--spec", spec, "--rate", "5000", "--probes", "unauthenticated", "--fail-on", "high"}, exitFindings},
		{"findings below critical", []string{"--target", srv.URL, "--spec", spec, "--rate", "5000", "--probes", "rate-limit", "--burst", "3", "--fail-on", "critical", "--format", "json"}, exitOK},
		{"dry run never fails", []string{"--target", srv.URL, "--spec", spec, "--dry-run", "--fail-on", "low"}, exitOK},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := scanCmd()
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
				t.Fatalf("exit %d, want %d (err %v)\n%s\n%s", code, tc.code, err, out.String(), errOut.String())
			}
		})
	}
}
