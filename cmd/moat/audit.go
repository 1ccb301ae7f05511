package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/config"
)

// exitNotIntact is moat audit verify's exit code for a chain that is not
// intact (docs/audit.md).
const exitNotIntact = 4

// auditCmd is moat audit: tools for the audit log.
func auditCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Work with audit logs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &exitError{exitUsage, errors.New("moat audit needs a subcommand: verify (see moat audit --help)")}
		},
	}
	c.AddCommand(auditVerifyCmd())
	return c
}

func auditVerifyCmd() *cobra.Command {
	var (
		keySpecs []string
		partial  bool
		rotated  bool
	)
	c := &cobra.Command{
		Use:   "verify --key env:NAME [--rotated] [--partial] FILE...",
		Short: "Check the hash chain of audit log files",
		Long: "Check that audit events form an intact HMAC-SHA256 hash chain and report the first edited,\n" +
			"inserted, deleted or reordered event with its file and line. Give the files oldest first\n" +
			"(rotated files, then the current one), or the current file with --rotated to add its rotated\n" +
			"files before it. Files ending in .gz are read through gzip.\n" +
			"Exit codes: 0 intact, 1 a file could not be read, 2 usage, 4 the chain is not intact.",
		Example: "  MOAT_AUDIT_KEY=... moat audit verify --key env:MOAT_AUDIT_KEY --rotated /var/log/moat/audit.jsonl",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keySpecs) == 0 {
				return &exitError{exitUsage, errors.New("--key is required: the audit.key of the gateway, as env:NAME or file:PATH")}
			}
			var keys [][]byte
			for _, spec := range keySpecs {
				k, err := readKey(spec)
				if err != nil {
					return &exitError{exitUsage, err}
				}
				keys = append(keys, k)
			}
			files := args
			if rotated {
				files = nil
				for _, a := range args {
					fs, err := audit.RotatedFiles(a)
					if err != nil {
						return &exitError{exitRuntime, err}
					}
					if len(fs) == 0 {
						return &exitError{exitRuntime, fmt.Errorf("%s: no such file, and no rotated files", a)}
					}
					files = append(files, fs...)
				}
			}
			res, err := audit.VerifyFiles(files, audit.VerifyOptions{Keys: keys, Partial: partial})
			if err != nil {
				return &exitError{exitRuntime, fmt.Errorf("moat audit verify: %v", err)}
			}
			if p := res.Problem; p != nil {
				return &exitError{exitNotIntact, fmt.Errorf("%s\nchain NOT intact: %d events verified before this problem", p.Error(), res.Events)}
			}
			if res.Events == 0 {
				return &exitError{exitNotIntact, errors.New("no events found: nothing to verify")}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "intact: %d events in %d files, sequence %d to %d, %d gateway starts\n",
				res.Events, res.Files, res.First, res.Last, res.ChainStarts)
			if partial {
				fmt.Fprintln(cmd.OutOrStdout(), "note: --partial trusts the first event; events before it were not checked")
			}
			fmt.Fprintln(cmd.OutOrStdout(), "note: events removed from the end cannot be detected from the files alone; compare the last sequence with a remote copy")
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&keySpecs, "key", nil, "HMAC key as env:NAME or file:PATH; repeat for a chain that changed keys")
	f.BoolVar(&partial, "partial", false, "accept files that begin in the middle of the chain (older files deleted by retention)")
	f.BoolVar(&rotated, "rotated", false, "verify each FILE's rotated files before it")
	return c
}

// readKey reads a key given as env:NAME or file:PATH (one trailing newline
// dropped). A key written on the command line would be visible to every
// user of the machine, so it is refused.
func readKey(spec string) ([]byte, error) {
	var k string
	switch {
	case strings.HasPrefix(spec, "env:"):
		v, ok := os.LookupEnv(strings.TrimPrefix(spec, "env:"))
		if !ok {
			return nil, fmt.Errorf("--key %s: environment variable not set", spec)
		}
		k = v
	case strings.HasPrefix(spec, "file:"):
		b, err := os.ReadFile(strings.TrimPrefix(spec, "file:"))
		if err != nil {
			return nil, fmt.Errorf("--key: %v", err)
		}
		k = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	default:
		return nil, errors.New("--key must be env:NAME or file:PATH: a key on the command line is visible to other users")
	}
	if len(k) < config.MinAuditKeyBytes {
		return nil, fmt.Errorf("--key %s: shorter than %d bytes, so it cannot be an audit.key", spec, config.MinAuditKeyBytes)
	}
	return []byte(k), nil
}
