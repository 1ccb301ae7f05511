//go:build !unix

package audit

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir creates dir/lock exclusively; on systems without flock a stale
// lock file left by a crash must be removed by hand.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit directory %s is in use (remove %s if no moat process runs): %w", dir, path, err)
	}
	return f, nil
}

func unlockDir(f *os.File) {
	if f != nil {
		name := f.Name()
		f.Close()
		os.Remove(name)
	}
}
