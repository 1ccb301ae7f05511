package payload

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"hash/adler32"
	"hash/crc32"
	"io"
	"testing"
)

// Compression bombs are generated, not stored: deflateZeros writes a valid
// deflate stream that expands to n zero bytes at the format's best ratio
// (1032:1), at the cost of writing n/1032 bytes. Compressing a gigabyte with
// compress/flate instead would take seconds, minutes under the race
// detector.
//
// The stream is one dynamic-Huffman block whose code gives the length 258
// (symbol 285) and the distance 1 one bit each, both the bit 0: after one
// literal zero, every further 258 zeros cost two zero bits, so the body of
// the block is zero bytes.

// bitWriter packs bits least significant first, as deflate does.
type bitWriter struct {
	w   *bufio.Writer
	acc uint64
	n   uint
}

func (b *bitWriter) bits(v uint64, n uint) {
	b.acc |= v << b.n
	b.n += n
	for b.n >= 8 {
		b.w.WriteByte(byte(b.acc))
		b.acc >>= 8
		b.n -= 8
	}
}

// code writes a Huffman code of length n, its most significant bit first.
func (b *bitWriter) code(c uint64, n uint) {
	var rev uint64
	for i := uint(0); i < n; i++ {
		rev = rev<<1 | (c>>i)&1
	}
	b.bits(rev, n)
}

func (b *bitWriter) zeros(n uint64) {
	for n > 0 {
		k := min(n, 32)
		b.bits(0, uint(k))
		n -= k
	}
}

func (b *bitWriter) flush() error {
	if b.n > 0 {
		b.w.WriteByte(byte(b.acc))
		b.acc, b.n = 0, 0
	}
	return b.w.Flush()
}

// deflateZeros writes a raw deflate stream (RFC 1951) of n >= 1 zero bytes.
func deflateZeros(w io.Writer, n uint64) error {
	b := &bitWriter{w: bufio.NewWriterSize(w, 32<<10)}
	b.bits(1, 1)  // BFINAL
	b.bits(2, 2)  // BTYPE 10: dynamic Huffman codes
	b.bits(29, 5) // HLIT: 286 literal/length codes
	b.bits(0, 5)  // HDIST: 1 distance code
	b.bits(14, 4) // HCLEN: 18 code length codes
	// Code length code lengths, in the order RFC 1951 section 3.2.7 lists
	// them (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1):
	// 18 (a run of zeros) gets 1 bit, lengths 1 and 2 get 2 bits each.
	for _, l := range []uint64{0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2} {
		b.bits(l, 3)
	}
	// Canonical code length codes: 18 -> 0, 1 -> 10, 2 -> 11.
	zeroRun := func(count uint64) { b.code(0, 1); b.bits(count-11, 7) }
	b.code(3, 2) // literal 0: length 2
	zeroRun(138) // literals 1..138 unused
	zeroRun(117) // literals 139..255 unused
	b.code(3, 2) // 256, end of block: length 2
	zeroRun(28)  // lengths 257..284 unused
	b.code(2, 2) // 285, length 258: length 1
	b.code(2, 2) // distance code 0, distance 1: length 1
	b.code(2, 2) // canonical literal/length codes: 285 -> 0, 0 -> 10, 256 -> 11; write literal 0
	pairs := (n - 1) / 258
	b.zeros(2 * pairs) // each (length 258, distance 1): codes 0 and 0
	for range (n - 1) % 258 {
		b.code(2, 2) // the rest as literal zeros
	}
	b.code(3, 2) // end of block
	return b.flush()
}

// crcZeros is the CRC-32 (IEEE) of n zero bytes.
func crcZeros(n uint64) uint32 {
	zero := make([]byte, 1<<20)
	var crc uint32
	for n > 0 {
		k := min(n, uint64(len(zero)))
		crc = crc32.Update(crc, crc32.IEEETable, zero[:k])
		n -= k
	}
	return crc
}

// gzipZeros writes a single-member gzip stream of n zero bytes.
func gzipZeros(w io.Writer, n uint64) error {
	if _, err := w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}); err != nil {
		return err
	}
	if err := deflateZeros(w, n); err != nil {
		return err
	}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], crcZeros(n))
	binary.LittleEndian.PutUint32(trailer[4:], uint32(n))
	_, err := w.Write(trailer[:])
	return err
}

// zlibZeros writes a zlib stream (HTTP's "deflate") of n zero bytes.
func zlibZeros(w io.Writer, n uint64) error {
	if _, err := w.Write([]byte{0x78, 0x9c}); err != nil {
		return err
	}
	if err := deflateZeros(w, n); err != nil {
		return err
	}
	var trailer [4]byte // Adler-32 of zeros: A = 1, B = n mod 65521
	binary.BigEndian.PutUint32(trailer[:], uint32(n%65521)<<16|1)
	_, err := w.Write(trailer[:])
	return err
}

// TestBombGenerators checks the generators against the standard library's
// decoders, checksums included, on sizes around the block arithmetic.
func TestBombGenerators(t *testing.T) {
	for _, n := range []uint64{1, 2, 258, 259, 260, 1000, 65521, 1<<20 + 7} {
		want := make([]byte, n)
		var raw, gz, zl bytes.Buffer
		if err := deflateZeros(&raw, n); err != nil {
			t.Fatal(err)
		}
		if err := gzipZeros(&gz, n); err != nil {
			t.Fatal(err)
		}
		if err := zlibZeros(&zl, n); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(flate.NewReader(bytes.NewReader(raw.Bytes())))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("deflate %d: %d bytes, %v", n, len(got), err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, want) {
			t.Errorf("gzip %d: %d bytes, %v", n, len(got), err)
		}
		lr, err := zlib.NewReader(bytes.NewReader(zl.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(lr); err != nil || !bytes.Equal(got, want) {
			t.Errorf("zlib %d: %d bytes, %v", n, len(got), err)
		}
		if a := adler32.Checksum(want); a != uint32(n%65521)<<16|1 {
			t.Errorf("adler32 closed form wrong for %d", n)
		}
		if n > 1000 && uint64(raw.Len()) > n/1000+200 {
			t.Errorf("deflate of %d zeros is %d bytes: not a bomb", n, raw.Len())
		}
	}
}

func TestDecodeBody(t *testing.T) {
	doc := randomHex(10000)
	tests := []struct {
		desc  string
		in    []byte
		c     coding
		bound int64
		over  bool
		fail  bool
	}{
		{desc: "gzip round trip", in: gzipped(t, doc), c: codingGzip, bound: 10000},
		{desc: "zlib round trip", in: zlibbed(t, doc), c: codingDeflate, bound: 10000},
		{desc: "gzip one byte over", in: gzipped(t, doc), c: codingGzip, bound: 9999, over: true},
		{desc: "zlib one byte over", in: zlibbed(t, doc), c: codingDeflate, bound: 9999, over: true},
		{desc: "gzip members in series", in: append(gzipped(t, doc[:5000]), gzipped(t, doc[5000:])...), c: codingGzip, bound: 10000},
		{desc: "empty gzip member", in: gzipped(t, nil), c: codingGzip, bound: 10},
		{desc: "not gzip", in: []byte("plain text"), c: codingGzip, bound: 100, fail: true},
		{desc: "not zlib", in: []byte("plain text"), c: codingDeflate, bound: 100, fail: true},
		{desc: "gzip checksum mismatch", in: corruptTrailer(gzipped(t, doc)), c: codingGzip, bound: 10000, fail: true},
		{desc: "zlib checksum mismatch", in: corruptTrailer(zlibbed(t, doc)), c: codingDeflate, bound: 10000, fail: true},
		{desc: "zlib with trailing data", in: append(zlibbed(t, doc), 0), c: codingDeflate, bound: 10000, fail: true},
		{desc: "gzip with trailing zeros", in: append(gzipped(t, doc), 0, 0, 0, 0), c: codingGzip, bound: 10000, fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			// Twice: the second run uses the pooled decompressor.
			for range 2 {
				out, over, err := decodeBody(tt.in, tt.c, tt.bound)
				switch {
				case tt.fail:
					if err == nil {
						t.Fatalf("decoded %d bytes, want an error", len(out))
					}
				case err != nil:
					t.Fatal(err)
				case over != tt.over:
					t.Fatalf("over = %v, want %v", over, tt.over)
				case !over && !bytes.Equal(out, doc[:len(out)]):
					t.Fatal("decoded bytes differ")
				case !over && int64(len(out)) > tt.bound:
					t.Fatalf("%d bytes over the bound %d", len(out), tt.bound)
				case over && out != nil:
					t.Fatal("bytes returned with over")
				}
			}
		})
	}
}

func corruptTrailer(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)-5] ^= 0xff
	return c
}

// TestDecodeBodyBombStopsAtTheBound decodes a 1 GiB bomb with a 1 MiB bound:
// it must stop right after the bound, allocating about twice the bound.
func TestDecodeBodyBombStopsAtTheBound(t *testing.T) {
	for _, tt := range []struct {
		desc  string
		gen   func(io.Writer, uint64) error
		c     coding
		bound int64
	}{
		{"gzip", gzipZeros, codingGzip, 1 << 20},
		{"deflate", zlibZeros, codingDeflate, 1 << 20},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			var bomb bytes.Buffer
			if err := tt.gen(&bomb, 1<<30); err != nil {
				t.Fatal(err)
			}
			var out []byte
			var over bool
			var err error
			alloc := allocated(func() { out, over, err = decodeBody(bomb.Bytes(), tt.c, tt.bound) })
			if err != nil || !over || out != nil {
				t.Fatalf("decodeBody = %d bytes, over %v, %v; want over", len(out), over, err)
			}
			if alloc > 8*uint64(tt.bound) {
				t.Errorf("allocated %d bytes to refuse a bomb at a %d-byte bound", alloc, tt.bound)
			}
		})
	}
}

// FuzzDecodeBody checks decodeBody against the standard readers: no panic,
// never more than the bound, and the same bytes when it succeeds.
func FuzzDecodeBody(f *testing.F) {
	f.Add(gzipped(f, []byte(`{"a":1}`)), true, uint16(100))
	f.Add(zlibbed(f, []byte(`{"a":1}`)), false, uint16(100))
	f.Add(gzipped(f, bytes.Repeat([]byte("a"), 5000)), true, uint16(1000))
	f.Add(append(gzipped(f, []byte("a")), gzipped(f, []byte("b"))...), true, uint16(10))
	var bomb bytes.Buffer
	_ = gzipZeros(&bomb, 1<<20)
	f.Add(bomb.Bytes(), true, uint16(4096))
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"), true, uint16(10))
	f.Add([]byte("\x78\x9c\x03\x00"), false, uint16(10))
	f.Fuzz(func(t *testing.T, data []byte, gz bool, bound uint16) {
		c := codingDeflate
		if gz {
			c = codingGzip
		}
		out, over, err := decodeBody(data, c, int64(bound))
		if err != nil {
			return
		}
		if int64(len(out)) > int64(bound) {
			t.Fatalf("%d bytes past the bound %d", len(out), bound)
		}
		var r io.Reader
		if gz {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("decodeBody accepted what gzip.NewReader refuses: %v", err)
			}
			r = zr
		} else {
			zr, err := zlib.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("decodeBody accepted what zlib.NewReader refuses: %v", err)
			}
			r = zr
		}
		want, rerr := io.ReadAll(io.LimitReader(r, int64(bound)+1))
		if over {
			if len(want) <= int(bound) {
				t.Fatalf("over the bound %d, but the stream holds %d bytes (%v)", bound, len(want), rerr)
			}
			return
		}
		if rerr != nil || !bytes.Equal(out, want) {
			t.Fatalf("decoded %q, standard reader %q (%v)", out, want, rerr)
		}
	})
}
