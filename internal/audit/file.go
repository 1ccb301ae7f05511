package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rotatedLayout is the time in a rotated file's name: the rotation time, UTC,
// with milliseconds, and no colons (which some file systems refuse).
const rotatedLayout = "2006-01-02T15-04-05.000"

// fileSink writes lines to a file and rotates it by size and age. Rotated
// files are renamed to base-<rotation time><ext> (and gzipped in the
// background when compress is set), and the oldest are deleted by count
// and age. A fileSink is used by one goroutine, except for compression,
// which runs on its own and is waited for by close.
type fileSink struct {
	path           string
	dir, base, ext string
	maxSize        int64
	maxAge         time.Duration
	keepFiles      int
	keepFor        time.Duration
	compress       bool
	sync           bool
	now            func() time.Time
	log            *slog.Logger

	f      *os.File
	size   int64
	opened time.Time
	buf    []byte

	retention sync.Mutex // serialises deletion with compression's rename
	bg        sync.WaitGroup
}

func newFileSink(path string, maxSize int64, maxAge time.Duration, keepFiles int, keepFor time.Duration, compress, sync bool, now func() time.Time, log *slog.Logger) *fileSink {
	dir, name := filepath.Split(path)
	ext := filepath.Ext(name)
	return &fileSink{path: path, dir: filepath.Clean(dir), base: strings.TrimSuffix(name, ext), ext: ext,
		maxSize: maxSize, maxAge: maxAge, keepFiles: keepFiles, keepFor: keepFor, compress: compress, sync: sync, now: now, log: log}
}

// start prepares the directory, finishes what a previous run left (partial
// compression, uncompressed rotated files) and applies retention.
func (s *fileSink) start() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("creating audit file directory: %w", err)
	}
	if err := s.open(); err != nil {
		return err
	}
	rotated, err := s.rotated()
	if err != nil {
		return err
	}
	for _, r := range rotated {
		p := filepath.Join(s.dir, r.stem)
		if r.gzTmp {
			os.Remove(p + ".gz.tmp")
		}
		switch {
		case r.plain && r.gz:
			os.Remove(p) // compressed before the last stop, not yet removed
		case r.plain && s.compress:
			s.compressLater(p)
		}
	}
	s.applyRetention()
	return nil
}

// open opens the file for appending. A last line without its newline (the
// process died in the middle of a write) is cut so the file stays valid
// JSON lines.
func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening audit file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.size, s.opened = f, fi.Size(), s.now()
	if s.size == 0 {
		return nil
	}
	if err := s.cutTornLine(); err != nil {
		f.Close()
		s.f = nil
		return err
	}
	if t, ok := firstEventTime(s.path); ok {
		s.opened = t
	}
	return nil
}

// cutTornLine truncates the file after its last newline.
func (s *fileSink) cutTornLine() error {
	r, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer r.Close()
	end := s.size
	var chunk [4096]byte
	for end > 0 {
		n := int64(len(chunk))
		if n > end {
			n = end
		}
		if _, err := r.ReadAt(chunk[:n], end-n); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(chunk[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == s.size {
		return nil
	}
	s.log.Warn("audit file: cut a torn last line", "file", s.path, "bytes", s.size-end)
	if err := s.f.Truncate(end); err != nil {
		return fmt.Errorf("truncating audit file: %w", err)
	}
	s.size = end
	return nil
}

// firstEventTime reads the @timestamp of the file's first event: the file's
// age counts from it across restarts.
func firstEventTime(path string) (time.Time, bool) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	var b [64]byte
	n, _ := io.ReadFull(f, b[:])
	m := metaOf(b[:n])
	if m.timestamp == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(m.timestamp))
	return t, err == nil
}

// send appends the batch in one write, rotating first when the file would
// pass max_size or is older than max_age. A failed write is undone, so a
// retry does not duplicate lines.
func (s *fileSink) send(_ context.Context, lines [][]byte) error {
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	s.buf = joinLines(s.buf[:0], lines)
	if s.size > 0 && (s.size+int64(len(s.buf)) > s.maxSize || s.now().Sub(s.opened) >= s.maxAge) {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(s.buf)
	if err != nil {
		if n > 0 {
			if terr := s.f.Truncate(s.size); terr != nil {
				// The file now holds part of the batch, which the retry
				// will write again: say so.
				s.log.Error("audit file: could not undo a partial write; a line may be torn", "file", s.path, "error", terr)
			}
		}
		return fmt.Errorf("writing audit file: %w", err)
	}
	s.size += int64(n)
	if s.sync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("syncing audit file: %w", err)
		}
	}
	if cap(s.buf) > 4<<20 {
		s.buf = nil
	}
	return nil
}

// rotate renames the current file after the rotation time and opens a new
// one; compression and retention follow.
func (s *fileSink) rotate() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("syncing audit file: %w", err)
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	s.f = nil
	stamp := s.now().UTC().Format(rotatedLayout)
	target := ""
	for i := 0; ; i++ {
		name := s.base + "-" + stamp
		if i > 0 {
			name += "-" + strconv.Itoa(i)
		}
		name += s.ext
		p := filepath.Join(s.dir, name)
		_, err1 := os.Lstat(p)
		_, err2 := os.Lstat(p + ".gz")
		if errors.Is(err1, os.ErrNotExist) && errors.Is(err2, os.ErrNotExist) {
			target = p
			break
		}
	}
	if err := os.Rename(s.path, target); err != nil {
		return fmt.Errorf("rotating audit file: %w", err)
	}
	if err := s.open(); err != nil {
		return err
	}
	if s.compress {
		s.compressLater(target)
	}
	s.applyRetention()
	return nil
}

// compressLater gzips a rotated file in the background: name.gz.tmp,
// synced, renamed to name.gz, then the original removed.
func (s *fileSink) compressLater(path string) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := gzipFile(path); err != nil {
			s.log.Warn("audit file: compressing a rotated file failed; it stays uncompressed", "file", path, "error", err)
			return
		}
		s.retention.Lock()
		defer s.retention.Unlock()
		if err := os.Rename(path+".gz.tmp", path+".gz"); err != nil {
			os.Remove(path + ".gz.tmp")
			return
		}
		os.Remove(path)
	}()
}

func gzipFile(path string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(path+".gz.tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if serr := out.Sync(); err == nil {
		err = serr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path + ".gz.tmp")
	}
	return err
}

// rotatedFile is one rotated file: its plain, compressed and partly
// compressed (.gz.tmp) copies share a stem.
type rotatedFile struct {
	stem  string // the name without .gz or .gz.tmp
	at    time.Time
	n     int  // collision suffix
	plain bool // stem exists
	gz    bool // stem.gz exists
	gzTmp bool // stem.gz.tmp exists
}

// name returns the complete copy to read: the compressed one when present.
func (r rotatedFile) name() string {
	if r.gz {
		return r.stem + ".gz"
	}
	return r.stem
}

// rotated lists this sink's rotated files, oldest first.
func (s *fileSink) rotated() ([]rotatedFile, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing audit files: %w", err)
	}
	re := rotatedPattern(s.base, s.ext)
	byStem := map[string]*rotatedFile{}
	var out []*rotatedFile
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		at, err := time.Parse(rotatedLayout, m[1])
		if err != nil {
			continue
		}
		stem := strings.TrimSuffix(e.Name(), m[3])
		r := byStem[stem]
		if r == nil {
			n, _ := strconv.Atoi(strings.TrimPrefix(m[2], "-"))
			r = &rotatedFile{stem: stem, at: at, n: n}
			byStem[stem] = r
			out = append(out, r)
		}
		switch m[3] {
		case "":
			r.plain = true
		case ".gz":
			r.gz = true
		default:
			r.gzTmp = true
		}
	}
	slices.SortStableFunc(out, func(a, b *rotatedFile) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.n - b.n
	})
	res := make([]rotatedFile, len(out))
	for i, r := range out {
		res[i] = *r
	}
	return res, nil
}

func rotatedPattern(base, ext string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(base) + `-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3})(-\d+)?` + regexp.QuoteMeta(ext) + `(\.gz|\.gz\.tmp)?$`)
}

// applyRetention deletes rotated files beyond keep_files and older than
// keep_for, with every copy of each.
func (s *fileSink) applyRetention() {
	if s.keepFiles <= 0 && s.keepFor <= 0 {
		return
	}
	s.retention.Lock()
	defer s.retention.Unlock()
	files, err := s.rotated()
	if err != nil {
		s.log.Warn("audit file: retention skipped", "error", err)
		return
	}
	cutoff := s.now().Add(-s.keepFor)
	for i, r := range files {
		tooMany := s.keepFiles > 0 && len(files)-i > s.keepFiles
		tooOld := s.keepFor > 0 && r.at.Before(cutoff)
		if !tooMany && !tooOld {
			continue
		}
		for _, suffix := range []string{"", ".gz", ".gz.tmp"} {
			p := filepath.Join(s.dir, r.stem+suffix)
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("audit file: could not delete an expired file", "file", p, "error", err)
			}
		}
	}
}

func (s *fileSink) close() error {
	s.bg.Wait()
	if s.f == nil {
		return nil
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}

// RotatedFiles returns the rotated files of the audit file at path, oldest
// first, followed by path itself when it exists: the order moat audit
// verify reads them in.
func RotatedFiles(path string) ([]string, error) {
	s := newFileSink(path, 0, 0, 0, 0, false, false, time.Now, slog.Default())
	rs, err := s.rotated()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rs {
		if r.plain || r.gz {
			out = append(out, filepath.Join(s.dir, r.name()))
		}
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out, nil
}

var _ sink = (*fileSink)(nil)
