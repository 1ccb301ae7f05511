package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/keys"
)

// keysRedisPrefix overrides the Redis key prefix of moat keys; tests set it
// to keep their keys apart.
var keysRedisPrefix = ""

// keysCmd is moat keys: API key administration against the store the
// configuration names (state.redis, or the state.keys_file bbolt file).
// A running gateway sees every change within a second.
func keysCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "keys",
		Short: "Create, list, show, revoke and rotate API keys",
		Long: "Manage the API keys of the api_key authenticators, in the store the configuration names:\n" +
			"state.redis when set, or else the bbolt file state.keys_file (default moat-keys.db beside the\n" +
			"configuration). Running gateways apply changes within a second; no restart is needed.\n" +
			"A key is shown once, when it is created or rotated; the store keeps only its SHA-256.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &exitError{exitUsage, errors.New("moat keys needs a subcommand: create, list, show, revoke or rotate (see moat keys --help)")}
		},
	}
	c.PersistentFlags().StringVarP(&path, "config", "c", "moat.yaml", "configuration file naming the key store")
	open := func(cmd *cobra.Command) (keys.Store, func(), error) {
		cfg, err := config.Load(path)
		if err != nil {
			return nil, nil, classify(err)
		}
		s, err := keys.Open(cfg, keys.RedisOptions{Prefix: keysRedisPrefix})
		if err != nil {
			return nil, nil, classify(err)
		}
		return s, func() { s.Close() }, nil
	}
	c.AddCommand(keysCreateCmd(open), keysListCmd(open), keysShowCmd(open), keysRevokeCmd(open), keysRotateCmd(open))
	return c
}

type openStore func(cmd *cobra.Command) (keys.Store, func(), error)

// with opens the store, runs f with it under a 30-second deadline, and
// closes the store.
func (open openStore) with(cmd *cobra.Command, f func(ctx context.Context, s keys.Store) error) error {
	s, done, err := open(cmd)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	return f(ctx, s)
}

func keysCreateCmd(open openStore) *cobra.Command {
	var (
		r       keys.Record
		expires string
		meta    []string
		asJSON  bool
	)
	c := &cobra.Command{
		Use:   "create --name NAME --subject SUBJECT [flags]",
		Short: "Create a key and print it once",
		Long: "Create an API key for a subject and print it on stdout, once: the store keeps only its hash.\n" +
			"The key's roles, scopes and plan become the request principal's.",
		Example: "  moat keys create -c moat.yaml --name ci --subject team-a --roles reader --scopes books:read --expires 90d",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now().UTC()
			if err := checkNames("roles", r.Roles); err != nil {
				return err
			}
			if err := checkNames("scopes", r.Scopes); err != nil {
				return err
			}
			if strings.TrimSpace(r.Subject) == "" {
				return &exitError{exitUsage, errors.New("--subject must not be empty")}
			}
			var err error
			if r.ExpiresAt, err = parseExpiry(expires, now); err != nil {
				return err
			}
			if r.Metadata, err = parseMeta(meta); err != nil {
				return err
			}
			return open.with(cmd, func(ctx context.Context, s keys.Store) error {
				rec, key, err := keys.Issue(ctx, s, r, now)
				if err != nil {
					return classify(err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Created key %s for %s. This is the only time the key is shown: store it in a secret manager now.\n", rec.ID, rec.Subject)
				return printKey(cmd.OutOrStdout(), key, &rec, now, asJSON)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&r.Name, "name", "", "name that says what the key is for (shown in lists)")
	f.StringVar(&r.Subject, "subject", "", "owner of the key: the principal's subject")
	f.StringSliceVar(&r.Roles, "roles", nil, "roles, comma-separated")
	f.StringSliceVar(&r.Scopes, "scopes", nil, "scopes, comma-separated")
	f.StringVar(&expires, "expires", "", "expiry: a duration from now (30d, 12h) or an RFC 3339 time; default never")
	f.StringVar(&r.Plan, "plan", "", "rate plan name")
	f.StringArrayVar(&meta, "meta", nil, "metadata key=value, repeatable")
	f.BoolVar(&asJSON, "json", false, "print the key and its record as JSON")
	c.MarkFlagRequired("name")
	c.MarkFlagRequired("subject")
	return c
}

func keysListCmd(open openStore) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List keys (never their secrets or hashes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return open.with(cmd, func(ctx context.Context, s keys.Store) error {
				rs, err := s.List(ctx)
				if err != nil {
					return classify(err)
				}
				now := time.Now()
				out := cmd.OutOrStdout()
				if asJSON {
					views := make([]keyView, len(rs))
					for i := range rs {
						views[i] = view(&rs[i], now)
					}
					return writeJSON(out, views)
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tSUBJECT\tSTATUS\tROLES\tSCOPES\tPLAN\tEXPIRES\tLAST USED")
				for i := range rs {
					r := &rs[i]
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, dash(r.Name), r.Subject, r.Status(now),
						dash(strings.Join(r.Roles, ",")), dash(strings.Join(r.Scopes, ",")), dash(r.Plan), when(r.ExpiresAt, "never"), when(r.LastUsedAt, "never"))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func keysShowCmd(open openStore) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "show ID",
		Short: "Show one key's record (never its secret or hash)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkID(args[0]); err != nil {
				return err
			}
			return open.with(cmd, func(ctx context.Context, s keys.Store) error {
				r, err := s.Get(ctx, args[0])
				if err != nil {
					return keyError(err)
				}
				v := view(&r, time.Now())
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), v)
				}
				printView(cmd.OutOrStdout(), &v)
				return nil
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func keysRevokeCmd(open openStore) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a key; running gateways refuse it within a second",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := checkID(id); err != nil {
				return err
			}
			return open.with(cmd, func(ctx context.Context, s keys.Store) error {
				if err := s.Revoke(ctx, id, time.Now().UTC()); err != nil {
					return keyError(err)
				}
				r, err := s.Get(ctx, id)
				if err != nil {
					return keyError(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Key %s (%s) revoked at %s.\n", id, r.Subject, r.RevokedAt.UTC().Format(time.RFC3339))
				return nil
			})
		},
	}
}

func keysRotateCmd(open openStore) *cobra.Command {
	var (
		grace  string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "rotate ID",
		Short: "Replace a key by a new one and print the new key once",
		Long: "Issue a new key, with a new ID, that inherits the old key's name, subject, roles, scopes, plan,\n" +
			"metadata and expiry. The old key is revoked at once, or with --grace it keeps working until\n" +
			"the grace period ends (its expiry is brought forward, never extended).",
		Example: "  moat keys rotate -c moat.yaml 4fT9xQ2a --grace 24h",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := checkID(id); err != nil {
				return err
			}
			var g time.Duration
			if grace != "" {
				d, err := config.ParseDuration(grace)
				if err != nil {
					return &exitError{exitUsage, fmt.Errorf("--grace: %v", err)}
				}
				g = d.D()
			}
			return open.with(cmd, func(ctx context.Context, s keys.Store) error {
				now := time.Now().UTC()
				rec, key, err := s.Rotate(ctx, id, now, g)
				if err != nil {
					return keyError(err)
				}
				old := "is revoked"
				if g > 0 {
					old = "keeps working until " + now.Add(g).Format(time.RFC3339)
					if r, err := s.Get(ctx, id); err == nil {
						old = "keeps working until " + r.ExpiresAt.UTC().Format(time.RFC3339)
					}
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Rotated key %s to %s; %s %s. This is the only time the new key is shown: store it in a secret manager now.\n", id, rec.ID, id, old)
				return printKey(cmd.OutOrStdout(), key, &rec, now, asJSON)
			})
		},
	}
	c.Flags().StringVar(&grace, "grace", "", "how long the old key keeps working (e.g. 24h, 7d); default: revoked at once")
	c.Flags().BoolVar(&asJSON, "json", false, "print the new key and its record as JSON")
	return c
}

// keyView is what moat keys prints of a record: never its hash.
type keyView struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`
	Subject     string            `json:"subject"`
	Status      string            `json:"status"`
	Roles       []string          `json:"roles,omitempty"`
	Scopes      []string          `json:"scopes,omitempty"`
	Plan        string            `json:"plan,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	ExpiresAt   time.Time         `json:"expires_at,omitzero"`
	CreatedAt   time.Time         `json:"created_at"`
	LastUsedAt  time.Time         `json:"last_used_at,omitzero"`
	RevokedAt   time.Time         `json:"revoked_at,omitzero"`
	RotatedFrom string            `json:"rotated_from,omitempty"`
	ReplacedBy  string            `json:"replaced_by,omitempty"`
}

func view(r *keys.Record, now time.Time) keyView {
	return keyView{
		ID: r.ID, Name: r.Name, Subject: r.Subject, Status: r.Status(now), Roles: r.Roles, Scopes: r.Scopes,
		Plan: r.Plan, Metadata: r.Metadata, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt,
		LastUsedAt: r.LastUsedAt, RevokedAt: r.RevokedAt, RotatedFrom: r.RotatedFrom, ReplacedBy: r.ReplacedBy,
	}
}

func printView(w io.Writer, v *keyView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	line("id", v.ID)
	line("name", v.Name)
	line("subject", v.Subject)
	line("status", v.Status)
	line("roles", strings.Join(v.Roles, ","))
	line("scopes", strings.Join(v.Scopes, ","))
	line("plan", v.Plan)
	line("created", when(v.CreatedAt, ""))
	line("expires", when(v.ExpiresAt, "never"))
	line("last used", when(v.LastUsedAt, "never"))
	line("revoked", when(v.RevokedAt, ""))
	line("rotated from", v.RotatedFrom)
	line("replaced by", v.ReplacedBy)
	for _, k := range slices.Sorted(maps.Keys(v.Metadata)) {
		line("meta "+k, v.Metadata[k])
	}
	tw.Flush()
}

// printKey prints a new key: the key alone, so that it can be captured with
// $(moat keys create ...), or as JSON with its record.
func printKey(w io.Writer, key string, r *keys.Record, now time.Time, asJSON bool) error {
	if !asJSON {
		_, err := fmt.Fprintln(w, key)
		return err
	}
	return writeJSON(w, struct {
		Key string `json:"key"`
		keyView
	}{key, view(r, now)})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func when(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseExpiry reads --expires: a duration from now (with a d unit for days)
// or an RFC 3339 time, which must be in the future.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	var t time.Time
	if d, err := config.ParseDuration(s); err == nil {
		t = now.Add(d.D())
	} else if t, err = time.Parse(time.RFC3339, s); err != nil {
		return time.Time{}, &exitError{exitUsage, fmt.Errorf("--expires %q: want a duration such as 30d or 12h, or an RFC 3339 time such as 2027-01-31T00:00:00Z", s)}
	}
	if !t.After(now) {
		return time.Time{}, &exitError{exitUsage, fmt.Errorf("--expires %q is not in the future", s)}
	}
	return t.UTC(), nil
}

// parseMeta reads --meta key=value flags.
func parseMeta(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, &exitError{exitUsage, fmt.Errorf("--meta %q: want key=value", kv)}
		}
		m[k] = v
	}
	return m, nil
}

// checkNames refuses empty roles or scopes and ones with spaces or commas,
// which the principal headers use as separators.
func checkNames(flag string, names []string) error {
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, " \t\r\n,") {
			return &exitError{exitUsage, fmt.Errorf("--%s: %q is not a valid name (no spaces, commas or empty names)", flag, n)}
		}
	}
	return nil
}

func checkID(id string) error {
	if err := keys.ValidID(id); err != nil {
		// The argument is not echoed: it may be a whole key pasted by mistake.
		hint := ""
		if strings.HasPrefix(id, keys.Prefix) {
			hint = " (give the key ID, the 8 characters after moat_, not the key itself)"
		}
		return &exitError{exitUsage, fmt.Errorf("the argument is not a key ID: want %d characters of 0-9, A-Z, a-z%s", keys.IDLen, hint)}
	}
	return nil
}

// keyError maps store errors: an unknown, revoked or expired key is a
// runtime failure (exit 1) with a plain message.
func keyError(err error) error {
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return &exitError{exitRuntime, fmt.Errorf("moat: no such key: %v", err)}
	case errors.Is(err, keys.ErrRevoked), errors.Is(err, keys.ErrExpired):
		return &exitError{exitRuntime, fmt.Errorf("moat: %v", err)}
	}
	return classify(err)
}
