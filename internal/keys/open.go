package keys

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moat-gateway/moat/internal/config"
)

// DefaultFile is the embedded store's file name, beside the configuration
// file, when state.keys_file is not set.
const DefaultFile = "moat-keys.db"

// FilePath returns the embedded store's path for cfg: state.keys_file, or
// DefaultFile, with a relative path taken relative to the configuration
// file's directory, so that moat keys -c /etc/moat/moat.yaml finds the same
// file as the gateway whatever the working directory. The gateway and the
// CLI must both use it.
func FilePath(cfg *config.Config) string {
	p := cfg.State.KeysFile
	if p == "" {
		p = DefaultFile
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(cfg.File()), p)
}

// Open returns the store cfg names: Redis when state.redis is set, with a
// client of its own that Close closes and ropts, or else the File at
// FilePath(cfg). It is meant for moat keys; a gateway shares its Redis client
// through NewRedis instead.
func Open(cfg *config.Config, ropts RedisOptions) (Store, error) {
	r := cfg.State.Redis
	if r == nil {
		return OpenFile(FilePath(cfg), FileOptions{})
	}
	opts := &redis.UniversalOptions{
		Addrs:        r.Addresses,
		MasterName:   r.MasterName,
		Username:     r.Username,
		Password:     r.Password.Value(),
		DB:           r.DB,
		DialTimeout:  5 * time.Second,
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
	}
	if r.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if r.CAFile != "" {
			pem, err := os.ReadFile(r.CAFile)
			if err != nil {
				return nil, fmt.Errorf("reading redis ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("redis ca_file %s holds no PEM certificate", r.CAFile)
			}
			tc.RootCAs = pool
		}
		opts.TLSConfig = tc
	}
	s := NewRedis(redis.NewUniversalClient(opts), ropts)
	s.own = true
	return s, nil
}
