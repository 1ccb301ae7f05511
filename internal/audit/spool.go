package audit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// The spool keeps a sink's undelivered events on disk, in order, across
// outages and restarts.
//
// It is a directory of segment files named by a 16-hex-digit ID, read in ID
// order. A segment starts with the 8-byte magic "MOATSPL1"; each record is
//
//	length (uint32, big endian) | CRC-32C of the payload (uint32) | payload
//
// Records are only ever appended (prepend writes a whole new segment before
// the first). A record is taken off the spool (acked) once the sink accepted
// it: the ack file holds, for each segment partly delivered, the offset of
// its first undelivered record; segments delivered completely are deleted.
//
// Durability: appends are written with one write(2) per batch, so a process
// crash loses nothing written; a segment is fsynced when it is full and when
// the spool closes, and after every write when sync is set. After an
// operating-system crash, the unsynced end of a segment may be torn or
// garbage: opening the spool checks every record and cuts each segment at
// its first bad record, logging what was discarded.
//
// A spool is not safe for concurrent use; its pipe serialises access.
type spool struct {
	dir    string
	max    int64 // cap: sum of segment file sizes
	segMax int64
	sync   bool
	log    *slog.Logger

	segs   []*segment // in ID order
	w      *os.File   // the last segment, open for appending
	wID    uint64
	nextID uint64

	size      atomic.Int64 // bytes on disk
	records   atomic.Int64 // records not acked
	discarded atomic.Int64 // bytes cut as torn or corrupt
	lost      atomic.Int64 // records lost with a segment file that disappeared
}

type segment struct {
	id      uint64
	size    int64 // file size
	read    int64 // offset of the first record not acked
	records int   // records not acked
}

// cursor is a position in the spool: everything before offset off of
// segment id has been read. n counts the records read since the last ack.
type cursor struct {
	id  uint64
	off int64
	n   int
}

const (
	segMagic     = "MOATSPL1"
	segHeader    = int64(len(segMagic))
	recHeader    = 8
	maxRecord    = 16 << 20
	firstSegment = uint64(1) << 40 // leaves room for prepended segments below
	ackFile      = "ack"
	ackMagic     = "MOATACK1"
)

// errSpoolFull reports records refused because the spool is at its cap.
var errSpoolFull = errors.New("audit spool is full")

// openSpool opens (creating) the spool in dir with a cap of capBytes,
// checks every segment and cuts torn or corrupt tails, and restores the
// delivery position from the ack file.
func openSpool(dir string, capBytes int64, sync bool, log *slog.Logger) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating audit spool: %w", err)
	}
	s := &spool{dir: dir, max: capBytes, sync: sync, log: log, nextID: firstSegment}
	s.segMax = min(max(capBytes/8, 64<<10), 16<<20)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading audit spool: %w", err)
	}
	acks := s.readAcks()
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			os.Remove(filepath.Join(dir, name))
			continue
		}
		id, ok := segmentID(name)
		if !ok {
			continue
		}
		seg, err := s.check(id, acks[id])
		if err != nil {
			return nil, err
		}
		if seg != nil {
			s.segs = append(s.segs, seg)
		}
	}
	slices.SortFunc(s.segs, func(a, b *segment) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	var size, recs int64
	kept := s.segs[:0]
	for _, seg := range s.segs {
		if seg.records == 0 {
			// Delivered completely (or empty): nothing left to replay.
			os.Remove(s.path(seg.id))
			continue
		}
		kept = append(kept, seg)
		size += seg.size
		recs += int64(seg.records)
	}
	s.segs = kept
	s.size.Store(size)
	s.records.Store(recs)
	if n := len(s.segs); n > 0 {
		s.nextID = s.segs[n-1].id + 1
	}
	if err := s.writeAcks(); err != nil {
		return nil, err
	}
	return s, nil
}

func segmentID(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, ".seg")
	if !ok || len(base) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(base, 16, 64)
	return id, err == nil
}

func (s *spool) path(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x.seg", id))
}

// check scans a segment, cuts it at its first bad record, and counts the
// records from the acked offset on. A file without the magic is removed.
func (s *spool) check(id uint64, acked int64) (*segment, error) {
	path := s.path(id)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening audit spool segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var magic [segHeader]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || string(magic[:]) != segMagic {
		s.log.Warn("audit spool: removing a segment without a valid header", "file", path, "bytes", fi.Size())
		s.discarded.Add(fi.Size())
		os.Remove(path)
		return nil, nil
	}
	seg := &segment{id: id, read: segHeader}
	r := bufio.NewReaderSize(f, 64<<10)
	off := segHeader
	var boundaries []int64
	for {
		_, n, err := readRecord(r, fi.Size()-off)
		if err != nil {
			break
		}
		boundaries = append(boundaries, off)
		off += int64(n)
	}
	if off < fi.Size() {
		s.log.Warn("audit spool: cut a torn or corrupt segment tail", "file", path, "kept", off, "discarded", fi.Size()-off)
		s.discarded.Add(fi.Size() - off)
		// No fsync needed: should the cut be lost in an OS crash, the
		// next open cuts again.
		if err := f.Truncate(off); err != nil {
			return nil, fmt.Errorf("truncating audit spool segment: %w", err)
		}
	}
	seg.size = off
	seg.records = len(boundaries)
	// The acked offset must be a record boundary or the end; anything else
	// is ignored and the segment is delivered again from its start.
	if acked > segHeader {
		if acked == off {
			seg.read, seg.records = off, 0
		} else if i, found := slices.BinarySearch(boundaries, acked); found {
			seg.read, seg.records = acked, len(boundaries)-i
		}
	}
	return seg, nil
}

// readRecord reads one record from r, which holds at most left bytes, and
// returns the payload and the bytes consumed. A short, oversized or corrupt
// record is an error (found before allocating for a length that cannot be
// there).
func readRecord(r io.Reader, left int64) ([]byte, int, error) {
	var h [recHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, 0, err
	}
	n := binary.BigEndian.Uint32(h[:4])
	if n == 0 || n > maxRecord || int64(n)+recHeader > left {
		return nil, 0, fmt.Errorf("record length %d out of range", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, 0, err
	}
	if crc32.Checksum(buf, castagnoli) != binary.BigEndian.Uint32(h[4:]) {
		return nil, 0, errors.New("record checksum mismatch")
	}
	return buf, recHeader + int(n), nil
}

func appendRecord(b, rec []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(rec)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(rec, castagnoli))
	return append(b, rec...)
}

// fit returns how many of recs, from the first, fit in room bytes.
func fit(recs [][]byte, room int64) int {
	for i, r := range recs {
		need := int64(recHeader + len(r))
		if len(r) == 0 || len(r) > maxRecord || need > room {
			return i
		}
		room -= need
	}
	return len(recs)
}

// append adds records at the end, in order, up to the cap (segment headers
// included). It returns how many were dropped: because the spool is full
// (errSpoolFull), or lost to the write error returned.
func (s *spool) append(recs [][]byte) (int, error) {
	var err error
	done := 0
	for done < len(recs) && err == nil {
		rest := recs[done:]
		room := s.max - s.size.Load()
		if s.w == nil || s.segs[len(s.segs)-1].size >= s.segMax {
			if fit(rest[:1], room-segHeader) == 0 {
				break
			}
			if err = s.roll(); err != nil {
				break
			}
			room -= segHeader
		}
		seg := s.segs[len(s.segs)-1]
		n := fit(rest, room)
		if n == 0 {
			break
		}
		var buf []byte
		k := 0
		for k < n && (k == 0 || seg.size+int64(len(buf)) < s.segMax) {
			buf = appendRecord(buf, rest[k])
			k++
		}
		if _, werr := s.w.Write(buf); werr != nil {
			// Undo a partial write so the segment stays well formed.
			_ = s.w.Truncate(seg.size)
			err = fmt.Errorf("writing audit spool: %w", werr)
			break
		}
		if s.sync {
			if serr := s.w.Sync(); serr != nil {
				err = fmt.Errorf("syncing audit spool: %w", serr)
			}
		}
		seg.size += int64(len(buf))
		seg.records += k
		s.size.Add(int64(len(buf)))
		s.records.Add(int64(k))
		done += k
	}
	dropped := len(recs) - done
	if err == nil && dropped > 0 {
		err = errSpoolFull
	}
	return dropped, err
}

// roll seals the current segment and starts a new one.
func (s *spool) roll() error {
	if s.w != nil {
		if err := s.w.Sync(); err != nil {
			return fmt.Errorf("syncing audit spool: %w", err)
		}
		s.w.Close()
		s.w = nil
	}
	id := s.nextID
	f, err := s.create(id, nil)
	if err != nil {
		return err
	}
	s.nextID++
	s.w, s.wID = f, id
	s.segs = append(s.segs, &segment{id: id, size: segHeader, read: segHeader})
	s.size.Add(segHeader)
	return nil
}

// create writes a new segment file with the given records and returns it
// open for appending.
func (s *spool) create(id uint64, recs [][]byte) (*os.File, error) {
	f, err := os.OpenFile(s.path(id), os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating audit spool segment: %w", err)
	}
	buf := []byte(segMagic)
	for _, r := range recs {
		buf = appendRecord(buf, r)
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		os.Remove(s.path(id))
		return nil, fmt.Errorf("writing audit spool: %w", err)
	}
	return f, nil
}

// prepend puts records before everything in the spool: a batch that failed
// after newer events were spooled. It writes them as a new segment (synced)
// ahead of the first.
func (s *spool) prepend(recs [][]byte) (int, error) {
	if len(s.segs) == 0 {
		return s.append(recs)
	}
	n := fit(recs, s.max-s.size.Load()-segHeader)
	recs, dropped := recs[:n], len(recs)-n
	if len(recs) > 0 {
		id := s.segs[0].id - 1
		f, err := s.create(id, recs)
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err != nil {
			return dropped + len(recs), err
		}
		size := segHeader
		for _, r := range recs {
			size += int64(recHeader + len(r))
		}
		s.segs = slices.Insert(s.segs, 0, &segment{id: id, size: size, read: segHeader, records: len(recs)})
		s.size.Add(size)
		s.records.Add(int64(len(recs)))
	}
	if dropped > 0 {
		return dropped, errSpoolFull
	}
	return 0, nil
}

// empty reports whether every record was acked.
func (s *spool) empty() bool { return s.records.Load() == 0 }

// read returns up to maxN records (and about maxBytes, at least one) from
// the first not acked, and the cursor after them. Reading again without an
// ack returns the same records. A record found corrupt now (the disk changed
// under the spool) ends its segment: the rest is cut and logged.
func (s *spool) read(maxN, maxBytes int) ([][]byte, cursor, error) {
	var out [][]byte
	var c cursor
	total := 0
	for _, seg := range s.segs {
		if seg.read >= seg.size {
			continue
		}
		f, err := os.Open(s.path(seg.id))
		if errors.Is(err, os.ErrNotExist) {
			// Removed behind our back: its events are lost; say so and
			// go on with the rest.
			s.log.Error("audit spool: a segment disappeared; its events are lost", "file", s.path(seg.id), "events", seg.records)
			s.lost.Add(int64(seg.records))
			s.cutAll(seg)
			continue
		}
		if err != nil {
			return out, c, fmt.Errorf("reading audit spool: %w", err)
		}
		r := bufio.NewReaderSize(io.NewSectionReader(f, seg.read, seg.size-seg.read), 64<<10)
		off := seg.read
		for off < seg.size && len(out) < maxN && (len(out) == 0 || total < maxBytes) {
			rec, n, err := readRecord(r, seg.size-off)
			if err != nil {
				s.log.Error("audit spool: record unreadable; cutting the segment there", "file", s.path(seg.id), "offset", off, "error", err)
				s.lost.Add(int64(s.cut(seg, off)))
				break
			}
			out = append(out, rec)
			total += len(rec)
			off += int64(n)
		}
		f.Close()
		c = cursor{id: seg.id, off: off, n: len(out)}
		if len(out) >= maxN || total >= maxBytes {
			break
		}
	}
	return out, c, nil
}

// cutAll forgets a segment whose file is gone.
func (s *spool) cutAll(seg *segment) {
	s.records.Add(-int64(seg.records))
	s.size.Add(-(seg.size - segHeader))
	seg.records, seg.size, seg.read = 0, segHeader, segHeader
	if seg.id == s.wID && s.w != nil {
		s.w.Close()
		s.w, s.wID = nil, 0
	}
}

// cut drops a segment's records from off on and returns how many records
// it lost.
func (s *spool) cut(seg *segment, off int64) int {
	lost := seg.size - off
	s.discarded.Add(lost)
	if seg.id == s.wID && s.w != nil {
		_ = s.w.Truncate(off)
	} else {
		_ = os.Truncate(s.path(seg.id), off)
	}
	// Count what is left to deliver in the segment again.
	left := 0
	if f, err := os.Open(s.path(seg.id)); err == nil {
		r := bufio.NewReader(io.NewSectionReader(f, seg.read, off-seg.read))
		for rest := off - seg.read; ; {
			_, n, err := readRecord(r, rest)
			if err != nil {
				break
			}
			rest -= int64(n)
			left++
		}
		f.Close()
	}
	gone := seg.records - left
	s.records.Add(-int64(gone))
	s.size.Add(-lost)
	seg.records, seg.size = left, off
	return gone
}

// ack takes the records read up to c off the spool: segments wholly
// delivered are deleted and the position within the next is saved. c must
// come from the last read, with no prepend in between.
func (s *spool) ack(c cursor) error {
	if c.n == 0 {
		return nil
	}
	left := c.n
	kept := s.segs[:0]
	for _, seg := range s.segs {
		switch {
		case seg.id < c.id:
			left -= seg.records
			s.records.Add(-int64(seg.records))
			seg.records, seg.read = 0, seg.size
		case seg.id == c.id:
			s.records.Add(-int64(left))
			seg.records -= left
			seg.read = c.off
		}
		writer := s.w != nil && seg.id == s.wID
		if seg.read >= seg.size && !writer {
			s.size.Add(-seg.size)
			os.Remove(s.path(seg.id))
			continue
		}
		kept = append(kept, seg)
	}
	clear(s.segs[len(kept):])
	s.segs = kept
	if len(s.segs) == 1 && s.w != nil && s.segs[0].id == s.wID && s.segs[0].read >= s.segs[0].size {
		// Everything is delivered: start afresh with the next append.
		s.w.Close()
		s.w = nil
		os.Remove(s.path(s.wID))
		s.size.Add(-s.segs[0].size)
		s.segs, s.wID = nil, 0
	}
	return s.writeAcks()
}

// readAcks loads the ack file: segment ID -> offset of its first record not
// delivered. A missing or damaged file means nothing was acked, so the
// spool is delivered again from the start (at least once).
func (s *spool) readAcks() map[uint64]int64 {
	b, err := os.ReadFile(filepath.Join(s.dir, ackFile))
	acks := map[uint64]int64{}
	if err != nil || len(b) < 16 || string(b[:8]) != ackMagic || (len(b)-16)%16 != 0 {
		return acks
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		s.log.Warn("audit spool: ack file damaged; delivering the spool from its start", "dir", s.dir)
		return acks
	}
	n := int(binary.BigEndian.Uint32(b[8:12]))
	if n != (len(b)-16)/16 {
		return acks
	}
	for i := 0; i < n; i++ {
		e := b[12+16*i:]
		acks[binary.BigEndian.Uint64(e[:8])] = int64(binary.BigEndian.Uint64(e[8:16]))
	}
	return acks
}

// writeAcks saves the delivery position of partly delivered segments,
// replacing the file atomically.
func (s *spool) writeAcks() error {
	path := filepath.Join(s.dir, ackFile)
	b := []byte(ackMagic)
	b = binary.BigEndian.AppendUint32(b, 0)
	n := 0
	for _, seg := range s.segs {
		if seg.read > segHeader {
			b = binary.BigEndian.AppendUint64(b, seg.id)
			b = binary.BigEndian.AppendUint64(b, uint64(seg.read))
			n++
		}
	}
	if n == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	binary.BigEndian.PutUint32(b[8:12], uint32(n))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing audit spool ack: %w", err)
	}
	_, err = f.Write(b)
	if err == nil && s.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("writing audit spool ack: %w", err)
	}
	return nil
}

// close syncs and closes the segment being written.
func (s *spool) close() error {
	if s.w == nil {
		return nil
	}
	err := s.w.Sync()
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	s.w = nil
	return err
}
