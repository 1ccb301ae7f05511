package keys

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Errors returned by stores. Callers test them with errors.Is.
var (
	ErrNotFound = errors.New("api key not found")
	ErrExists   = errors.New("api key ID already exists")
	ErrRevoked  = errors.New("api key is revoked")
	ErrExpired  = errors.New("api key has expired")
	// ErrResync is returned by Store.Changes when the store can no longer
	// say what changed since the given version (its change log was trimmed,
	// or the store was replaced); the caller reloads with Snapshot.
	ErrResync = errors.New("key store changed beyond its change log")
)

// Record is everything a store keeps about one key. It never holds the key
// itself, only its Hash. Stores encode it as JSON.
type Record struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`
	Subject     string            `json:"subject"` // owner: becomes Principal.Subject
	Roles       []string          `json:"roles,omitempty"`
	Scopes      []string          `json:"scopes,omitempty"`
	Plan        string            `json:"plan,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	ExpiresAt   time.Time         `json:"expires_at,omitzero"`
	CreatedAt   time.Time         `json:"created_at"`
	LastUsedAt  time.Time         `json:"last_used_at,omitzero"`
	RevokedAt   time.Time         `json:"revoked_at,omitzero"`
	RotatedFrom string            `json:"rotated_from,omitempty"` // ID of the key this one replaced
	ReplacedBy  string            `json:"replaced_by,omitempty"`  // ID of the key that replaced this one
	Hash        Hash              `json:"hash"`
}

// Status returns "active", "revoked" or "expired" as of now. A revocation
// applies from the moment it is recorded, whatever its time says, so that
// clock skew between the host that revoked and the gateway cannot delay it.
func (r *Record) Status(now time.Time) string {
	switch {
	case !r.RevokedAt.IsZero():
		return "revoked"
	case !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt):
		return "expired"
	}
	return "active"
}

// validate checks what every store requires of a new record.
func (r *Record) validate() error {
	if err := ValidID(r.ID); err != nil {
		return err
	}
	if r.Subject == "" {
		return errors.New("api key record: subject is required")
	}
	if r.Hash.IsZero() {
		return errors.New("api key record: hash is required")
	}
	if r.CreatedAt.IsZero() {
		return errors.New("api key record: created_at is required")
	}
	return nil
}

// Store keeps key records. Implementations (File, Redis) are safe for
// concurrent use by several goroutines and several processes: writes from
// one process reach every Cache reading the same store within its refresh
// interval.
type Store interface {
	// Create adds r, whose ID, Subject, Hash and CreatedAt must be set.
	// It returns ErrExists if the ID is taken. Use Issue to create a key.
	Create(ctx context.Context, r Record) error
	// Get returns the record with id, or ErrNotFound.
	Get(ctx context.Context, id string) (Record, error)
	// List returns every record, oldest first.
	List(ctx context.Context) ([]Record, error)
	// Revoke marks the key revoked as of at. Revoking a revoked key keeps
	// the first time and returns nil; an unknown id is ErrNotFound.
	Revoke(ctx context.Context, id string, at time.Time) error
	// Rotate replaces the key id by a new key with a new ID that inherits
	// its name, subject, roles, scopes, plan, metadata and expiry, and
	// returns the new record and the new key (shown once, never stored).
	// The old key is revoked at at when grace is zero; otherwise its expiry
	// is brought forward to at+grace (never extended), so that clients can
	// switch over. Both changes are made atomically. A revoked or expired
	// key cannot be rotated (ErrRevoked, ErrExpired).
	//
	// A new ID, rather than a new secret under the old ID, keeps one ID
	// naming exactly one secret in logs and audit events, and lets the old
	// and new key overlap during the grace period.
	Rotate(ctx context.Context, id string, at time.Time, grace time.Duration) (Record, string, error)
	// TouchLastUsed records when keys were last used, in one batch. A time
	// earlier than the one stored is ignored; unknown IDs are skipped. It is
	// called by Cache in the background, never on the request path.
	TouchLastUsed(ctx context.Context, used map[string]time.Time) error

	// Snapshot returns every record and the store version they reflect.
	Snapshot(ctx context.Context) (version uint64, records []Record, err error)
	// Changes returns the records changed (created, revoked, rotated) after
	// version since, and the store's current version. ErrResync means the
	// caller must reload with Snapshot. Last-use times are not changes.
	Changes(ctx context.Context, since uint64) (version uint64, records []Record, err error)

	// Close releases the store's resources.
	Close() error
}

// Notifier is implemented by stores that can announce changes as they
// happen (Redis pub/sub). A Cache refreshes when the channel receives,
// besides polling. The channel is closed when ctx is done.
type Notifier interface {
	Notify(ctx context.Context) <-chan struct{}
}

// Issue creates a key for the subject and attributes of r (its ID, Hash,
// CreatedAt, LastUsedAt and RevokedAt are set here) and returns the stored
// record and the key, which must be shown to the user once and not kept.
func Issue(ctx context.Context, s Store, r Record, now time.Time) (Record, string, error) {
	for range 5 {
		key, id := Generate()
		r.ID, r.Hash, r.CreatedAt = id, HashKey(key), now
		r.LastUsedAt, r.RevokedAt = time.Time{}, time.Time{}
		err := s.Create(ctx, r)
		if errors.Is(err, ErrExists) {
			continue // 1 chance in 62^8/n: draw another ID
		}
		if err != nil {
			return Record{}, "", err
		}
		return r, key, nil
	}
	return Record{}, "", fmt.Errorf("creating api key: %w after 5 attempts", ErrExists)
}

// rotation computes a rotation of old at at: the new record and its key, and
// the old record as it becomes. isFree reports whether an ID is unused.
func rotation(old Record, at time.Time, grace time.Duration, isFree func(id string) bool) (next Record, key string, retired Record, err error) {
	switch old.Status(at) {
	case "revoked":
		return Record{}, "", Record{}, fmt.Errorf("rotating %s: %w", old.ID, ErrRevoked)
	case "expired":
		return Record{}, "", Record{}, fmt.Errorf("rotating %s: %w", old.ID, ErrExpired)
	}
	var id string
	for range 5 {
		if key, id = Generate(); isFree(id) {
			break
		}
		id = ""
	}
	if id == "" {
		return Record{}, "", Record{}, fmt.Errorf("rotating %s: %w after 5 attempts", old.ID, ErrExists)
	}
	next = Record{
		ID: id, Name: old.Name, Subject: old.Subject,
		Roles: slices.Clone(old.Roles), Scopes: slices.Clone(old.Scopes), Plan: old.Plan,
		Metadata: maps.Clone(old.Metadata), ExpiresAt: old.ExpiresAt, CreatedAt: at,
		RotatedFrom: old.ID, Hash: HashKey(key),
	}
	retired = old
	retired.ReplacedBy = id
	if grace <= 0 {
		retired.RevokedAt = at
	} else if end := at.Add(grace); retired.ExpiresAt.IsZero() || end.Before(retired.ExpiresAt) {
		retired.ExpiresAt = end
	}
	return next, key, retired, nil
}

// sortRecords orders records oldest first, then by ID.
func sortRecords(rs []Record) {
	slices.SortFunc(rs, func(a, b Record) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
}
