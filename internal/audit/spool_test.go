package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func recs(from, to int) [][]byte {
	var out [][]byte
	for i := from; i < to; i++ {
		out = append(out, fmt.Appendf(nil, "event-%04d\n", i))
	}
	return out
}

func mustOpenSpool(t testing.TB, dir string, capBytes int64) *spool {
	t.Helper()
	s, err := openSpool(dir, capBytes, false, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readAll reads and acks everything, in batches of n.
func readAll(t testing.TB, s *spool, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		got, c, err := s.read(n, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return out
		}
		out = append(out, got...)
		if err := s.ack(c); err != nil {
			t.Fatal(err)
		}
	}
}

func sameRecords(t testing.TB, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// segFiles lists the segment files of a spool directory.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSpoolAppendReadAck(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<20)
	if _, err := s.append(recs(0, 10)); err != nil {
		t.Fatal(err)
	}
	got, c, err := s.read(4, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, recs(0, 4))
	// Reading again without an ack returns the same records.
	again, _, _ := s.read(4, 1<<20)
	sameRecords(t, again, recs(0, 4))
	if err := s.ack(c); err != nil {
		t.Fatal(err)
	}
	if n := s.records.Load(); n != 6 {
		t.Fatalf("%d records left, want 6", n)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	// A restart resumes after what was acked.
	s = mustOpenSpool(t, dir, 1<<20)
	sameRecords(t, readAll(t, s, 3), recs(4, 10))
	if !s.empty() || s.size.Load() != 0 || len(segFiles(t, dir)) != 0 {
		t.Fatalf("delivered spool not empty: %d records, %d bytes, files %v", s.records.Load(), s.size.Load(), segFiles(t, dir))
	}
	// And it is usable afterwards.
	if _, err := s.append(recs(10, 12)); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, readAll(t, s, 10), recs(10, 12))
	s.close()
}

func TestSpoolUnackedIsDeliveredAgain(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<20)
	s.append(recs(0, 5))
	if got, _, _ := s.read(5, 1<<20); len(got) != 5 {
		t.Fatalf("read %d", len(got))
	}
	s.close() // crash before the ack: at least once
	s = mustOpenSpool(t, dir, 1<<20)
	sameRecords(t, readAll(t, s, 2), recs(0, 5))
	s.close()
}

// TestSpoolTornTail simulates crashes in the middle of a write: the
// segment ends with part of a record, or garbage. Opening keeps every whole
// record, cuts the rest, and the spool goes on working.
func TestSpoolTornTail(t *testing.T) {
	whole := appendRecord(nil, []byte("event-torn\n"))
	badCRC := bytes.Clone(whole)
	badCRC[5] ^= 0xff
	tests := []struct {
		desc string
		tail []byte
	}{
		{"half a header", whole[:3]},
		{"header without payload", whole[:recHeader]},
		{"payload cut short", whole[:len(whole)-2]},
		{"checksum mismatch", badCRC},
		{"zero length", make([]byte, recHeader)},
		{"huge length", binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 1<<31), 0)},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpenSpool(t, dir, 1<<20)
			s.append(recs(0, 3))
			s.close()
			files := segFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("segments %v", files)
			}
			before, _ := os.Stat(files[0])
			f, _ := os.OpenFile(files[0], os.O_WRONLY|os.O_APPEND, 0)
			f.Write(tc.tail)
			f.Close()

			s = mustOpenSpool(t, dir, 1<<20)
			if got := s.discarded.Load(); got != int64(len(tc.tail)) {
				t.Errorf("discarded %d bytes, want %d", got, len(tc.tail))
			}
			after, _ := os.Stat(files[0])
			if after.Size() != before.Size() {
				t.Errorf("segment is %d bytes after repair, want %d", after.Size(), before.Size())
			}
			s.append(recs(3, 5))
			sameRecords(t, readAll(t, s, 2), recs(0, 5))
			s.close()
		})
	}
}

func TestSpoolBadHeaderRemoved(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.seg", firstSegment)), []byte("NOTASPOOLFILE"), 0o600)
	s := mustOpenSpool(t, dir, 1<<20)
	if !s.empty() || len(segFiles(t, dir)) != 0 {
		t.Fatal("a segment without the magic was kept")
	}
	s.close()
}

func TestSpoolCap(t *testing.T) {
	dir := t.TempDir()
	rec := recHeader + len(recs(0, 1)[0])
	capBytes := int64(segHeader) + int64(5*rec)
	s := mustOpenSpool(t, dir, capBytes)
	dropped, err := s.append(recs(0, 8))
	if dropped != 3 || !errors.Is(err, errSpoolFull) {
		t.Fatalf("dropped %d (%v), want 3 and errSpoolFull", dropped, err)
	}
	if s.size.Load() != capBytes {
		t.Fatalf("size %d, want the cap %d", s.size.Load(), capBytes)
	}
	// Delivering frees room.
	got, c, _ := s.read(2, 1<<20)
	sameRecords(t, got, recs(0, 2))
	s.ack(c)
	sameRecords(t, readAll(t, s, 10), recs(0, 5)[2:])
	if dropped, err := s.append(recs(8, 10)); dropped != 0 || err != nil {
		t.Fatalf("append after draining: %d %v", dropped, err)
	}
	s.close()
}

// TestSpoolSegments writes across several segments and checks that they
// are read in order and deleted once delivered.
func TestSpoolSegments(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 512<<10) // segments of 64 KiB
	big := make([][]byte, 0, 400)
	for i := range 400 {
		big = append(big, bytes.Repeat([]byte{byte('a' + i%26)}, 1000))
	}
	for i := 0; i < len(big); i += 37 {
		if _, err := s.append(big[i:min(i+37, len(big))]); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("%d segments, want several", n)
	}
	got, c, _ := s.read(150, 1<<30)
	s.ack(c)
	if n := len(segFiles(t, dir)); n < 3 {
		t.Fatalf("%d segments after acking 150 records", n)
	}
	s.close()
	s = mustOpenSpool(t, dir, 512<<10)
	got = append(got, readAll(t, s, 64)...)
	sameRecords(t, got, big)
	s.close()
}

// TestSpoolPrepend puts a failed batch ahead of newer spooled events, also
// when the first segment was partly delivered, and across a restart.
func TestSpoolPrepend(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<20)
	s.append(recs(10, 20))
	got, c, _ := s.read(3, 1<<20)
	sameRecords(t, got, recs(10, 13))
	s.ack(c)
	if _, err := s.prepend(recs(0, 5)); err != nil {
		t.Fatal(err)
	}
	got, c, _ = s.read(7, 1<<20)
	sameRecords(t, got, append(recs(0, 5), recs(13, 15)...))
	s.ack(c)
	s.close()
	s = mustOpenSpool(t, dir, 1<<20)
	sameRecords(t, readAll(t, s, 4), recs(15, 20))
	s.close()
}

// FuzzSpoolSegment opens a spool whose segment and ack file hold arbitrary
// bytes: it must not panic, must return only records whose checksum holds,
// must leave the files repaired (a second open finds the same records and
// discards nothing), and its byte count must match the files.
func FuzzSpoolSegment(f *testing.F) {
	good := []byte(segMagic)
	for _, r := range recs(0, 3) {
		good = appendRecord(good, r)
	}
	f.Add(good, []byte{})
	f.Add(good[:len(good)-3], []byte(ackMagic+"\x00\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1a\x00\x00\x00\x00"))
	f.Add([]byte(segMagic+"\x00\x00\x00\x05\x00\x00\x00\x00abc"), []byte("garbage"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, seg, ack []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.seg", firstSegment)), seg, 0o600)
		os.WriteFile(filepath.Join(dir, ackFile), ack, 0o600)
		s, err := openSpool(dir, 1<<20, false, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		var onDisk int64
		for _, p := range segFiles(t, dir) {
			fi, _ := os.Stat(p)
			onDisk += fi.Size()
		}
		if s.size.Load() != onDisk {
			t.Fatalf("size %d, files %d", s.size.Load(), onDisk)
		}
		first, _, err := s.read(1<<20, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(first)) != s.records.Load() {
			t.Fatalf("read %d records, spool counts %d", len(first), s.records.Load())
		}
		s.close()
		s2, err := openSpool(dir, 1<<20, false, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		defer s2.close()
		if s2.discarded.Load() != 0 {
			t.Fatalf("second open discarded %d bytes", s2.discarded.Load())
		}
		second := readAll(t, s2, 7)
		sameRecords(t, second, first)
		if !s2.empty() || s2.size.Load() != 0 {
			t.Fatalf("not empty after delivering everything: %d records %d bytes", s2.records.Load(), s2.size.Load())
		}
	})
}
