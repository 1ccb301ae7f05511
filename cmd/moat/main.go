// Command moat is an API security gateway: one binary in front of any HTTP
// API. See README.md and docs/ for configuration and operation.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/demo"
	"github.com/moat-gateway/moat/internal/pipeline"
	"github.com/moat-gateway/moat/internal/server"

	_ "time/tzdata" // quota time zones work on hosts without a zoneinfo database
)

// Exit codes, documented in docs/cli.md.
const (
	exitOK      = 0
	exitRuntime = 1 // the gateway failed while running (a listener could not bind, ...)
	exitUsage   = 2 // wrong flags or arguments
	exitConfig  = 3 // the configuration is invalid
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, ee.err)
		}
		return ee.code
	}
	// cobra's own errors: unknown command or flag.
	fmt.Fprintln(stderr, "error:", err)
	fmt.Fprintln(stderr, "run 'moat --help' for usage")
	return exitUsage
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "moat",
		Short:         "moat is an API security gateway",
		Long:          "moat stands in front of any HTTP API and applies TLS, authentication, authorization,\nrate limits, input validation and safe responses, on by default.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(serveCmd(), validateCmd(), schemaCmd(), demoCmd(), versionCmd())
	root.AddCommand(keysCmd(), auditCmd(), scanCmd(), lintCmd())
	return root
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

func serveCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway with a configuration file",
		Long:  "Run the gateway. SIGHUP or a change to the file reloads the configuration all-or-nothing;\nSIGTERM or SIGINT stops accepting and drains in-flight requests for server.shutdown_grace.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			if err := server.Run(ctx, path, server.Options{Version: Version()}); err != nil {
				return classify(err)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", "moat.yaml", "configuration file")
	return c
}

func validateCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration file and report every problem",
		Long:  "Decode, check and compile a configuration without opening sockets or contacting upstreams.\nEvery problem is printed as file:line:col: field.path: message. Exit code 3 when invalid.",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := config.Load(path)
			if err == nil {
				g, berr := pipeline.Build(cfg, nil, nil)
				if berr == nil {
					g.Close(0)
				}
				err = berr
			}
			if err != nil {
				return classify(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d listeners, %d upstreams, %d routes)\n", path, len(cfg.Listeners), len(cfg.Upstreams), len(cfg.Routes))
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", "moat.yaml", "configuration file")
	return c
}

func schemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the configuration file",
		Long:  "Print the JSON Schema (draft 2020-12) of moat.yaml, for editor completion and checks.\nExample for the YAML language server: # yaml-language-server: $schema=moat.schema.json",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := config.JSONSchema()
			if err != nil {
				return &exitError{exitRuntime, err}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return err
		},
	}
}

func demoCmd() *cobra.Command {
	var o demo.Options
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a sample bookstore API behind the gateway on loopback",
		Long:  "Start the built-in bookstore API on a loopback port and the gateway in front of it with\nexamples/quickstart.yaml, then print the URLs and a few curl commands to try.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			o.Out = cmd.OutOrStdout()
			if err := demo.Run(ctx, o); err != nil {
				return classify(err)
			}
			return nil
		},
	}
	c.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:8080", "gateway address (loopback only)")
	c.Flags().StringVarP(&o.ConfigPath, "config", "c", "", "configuration to use instead of the embedded examples/quickstart.yaml")
	return c
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "moat", Version())
		},
	}
}

// Version returns the version set at build time, or the module version and
// VCS revision recorded by the Go toolchain.
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v + " " + bi.GoVersion
}

// classify maps an error to its exit code and message.
func classify(err error) error {
	var ce *config.Error
	if errors.As(err, &ce) {
		msg := fmt.Sprintf("%s\n%d problem(s) in the configuration", ce.Error(), len(ce.Problems))
		return &exitError{exitConfig, errors.New(msg)}
	}
	if errors.Is(err, os.ErrNotExist) {
		return &exitError{exitConfig, fmt.Errorf("%v\n(give the file with -c FILE; 'moat demo' runs without one)", err)}
	}
	return &exitError{exitRuntime, fmt.Errorf("moat: %v", err)}
}
