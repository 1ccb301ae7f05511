package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

const testAuditKey = "a test audit key of 32+ bytes ok"

// moatAudit runs auditCmd with args the way run does and returns the exit
// code, stdout and stderr.
func moatAudit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	c := auditCmd()
	var out, errb bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&errb)
	c.SetArgs(args)
	c.SilenceUsage, c.SilenceErrors = true, true
	err := c.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return exitOK, out.String(), errb.String()
	case errors.As(err, &ee):
		fmt.Fprintln(&errb, ee.err)
		return ee.code, out.String(), errb.String()
	}
	fmt.Fprintln(&errb, err)
	return exitUsage, out.String(), errb.String()
}

// writeAuditLog runs an Auditor with a file sink twice (a restart), with
// rotation, and returns the current file.
func writeAuditLog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "logs", "audit.jsonl")
	var key config.Secret
	key.UnmarshalText([]byte(testAuditKey))
	cfg := config.Audit{Dir: filepath.Join(dir, "state"), Key: key, Hostname: "gw", Sinks: []config.AuditSink{{
		Type: "file", BatchSize: 1, File: &config.AuditFile{Path: path, MaxSize: 4096},
	}}} // one write per event: the files rotate at the same events every run
	for run := 0; run < 2; run++ {
		a, err := audit.New(cfg, audit.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		a.Start()
		for i := 0; i < 8; i++ {
			ev := audit.AdminAction(time.Now(), "route_disable", &gateway.Principal{Subject: "ops"}, netip.MustParseAddr("192.0.2.1"), fmt.Sprintf("step %d of run %d", i, run), nil)
			a.Record(&ev)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = a.Close(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestAuditVerifyCommand(t *testing.T) {
	path := writeAuditLog(t)
	t.Setenv("MOAT_TEST_AUDIT_KEY", testAuditKey)
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte(testAuditKey+"\n"), 0o600)
	rotated, err := audit.RotatedFiles(path)
	if err != nil || len(rotated) < 2 {
		t.Fatalf("want rotated files: %v %v", rotated, err)
	}

	tampered := filepath.Join(t.TempDir(), "audit.jsonl")
	b, _ := os.ReadFile(rotated[0])
	os.WriteFile(tampered, bytes.Replace(b, []byte("step 1 of run 0"), []byte("step 9 of run 0"), 1), 0o600)

	tests := []struct {
		desc   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"intact across rotation and restart", []string{"verify", "--key", "env:MOAT_TEST_AUDIT_KEY", "--rotated", path}, exitOK, "intact: 18 events", ""},
		{"key from a file", append([]string{"verify", "--key", "file:" + keyFile}, rotated...), exitOK, "2 gateway starts", ""},
		{"edited", []string{"verify", "--key", "env:MOAT_TEST_AUDIT_KEY", tampered}, exitNotIntact, "", tampered + ":3: edited"},
		{"current file alone", []string{"verify", "--key", "env:MOAT_TEST_AUDIT_KEY", path}, exitNotIntact, "", "mid_chain"},
		{"current file alone, partial", []string{"verify", "--key", "env:MOAT_TEST_AUDIT_KEY", "--partial", path}, exitOK, "--partial trusts the first event", ""},
		{"wrong key", []string{"verify", "--key", "file:" + writeFile(t, strings.Repeat("x", 32)), "--rotated", path}, exitNotIntact, "", "unknown_key"},
		{"key on the command line", []string{"verify", "--key", testAuditKey, path}, exitUsage, "", "visible to other users"},
		{"key too short", []string{"verify", "--key", "file:" + writeFile(t, "short"), path}, exitUsage, "", "shorter than 32 bytes"},
		{"unset variable", []string{"verify", "--key", "env:MOAT_TEST_NO_SUCH_VARIABLE", path}, exitUsage, "", "not set"},
		{"no key", []string{"verify", path}, exitUsage, "", "--key is required"},
		{"missing file", []string{"verify", "--key", "env:MOAT_TEST_AUDIT_KEY", filepath.Join(t.TempDir(), "nope.jsonl")}, exitRuntime, "", "no such file"},
		{"empty file", []string{"verify", "--key", "env:MOAT_TEST_AUDIT_KEY", writeFile(t, "")}, exitNotIntact, "", "no events"},
		{"no subcommand", []string{}, exitUsage, "", "needs a subcommand"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			code, out, errb := moatAudit(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errb, tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out, errb)
			}
		})
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
