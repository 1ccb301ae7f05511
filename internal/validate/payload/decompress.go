package payload

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"sync"
)

// coding is a supported content coding of request bodies.
type coding uint8

const (
	codingIdentity coding = iota
	codingGzip            // RFC 1952, several members in series allowed
	codingDeflate         // the zlib format (RFC 1950), as RFC 9110 section 8.4.1.2 defines "deflate"
)

func (c coding) String() string {
	switch c {
	case codingGzip:
		return "gzip"
	case codingDeflate:
		return "deflate"
	}
	return "identity"
}

// Decompressors are large (tens of KiB of tables and window) and reusable
// with Reset; pooling them keeps a compressed request from allocating one.
var (
	gzipPool sync.Pool // *gzip.Reader
	zlibPool sync.Pool // io.ReadCloser that implements zlib.Resetter
)

// errTrailingData reports bytes after the end of a compressed stream.
var errTrailingData = errors.New("data after the end of the compressed stream")

// decodeBody decodes b, compressed with c, into a new slice of at most
// bound bytes. It streams: it never holds more than bound+1 decoded bytes
// and stops reading as soon as that is crossed, so a small body that would
// expand to gigabytes (a "zip bomb") costs at most bound bytes and the time
// to decode them. It returns over = true when the decoded content is larger
// than bound, and an error when b is not a valid stream or has data after
// its end.
func decodeBody(b []byte, c coding, bound int64) (out []byte, over bool, err error) {
	src := bytes.NewReader(b)
	var r io.Reader
	switch c {
	case codingGzip:
		zr, _ := gzipPool.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		defer gzipPool.Put(zr)
		if err := zr.Reset(src); err != nil {
			return nil, false, err
		}
		zr.Multistream(true)
		r = zr
	case codingDeflate:
		zr, _ := zlibPool.Get().(io.ReadCloser)
		if zr == nil {
			if zr, err = zlib.NewReader(src); err != nil {
				return nil, false, err
			}
		} else if err := zr.(zlib.Resetter).Reset(src, nil); err != nil {
			zlibPool.Put(zr)
			return nil, false, err
		}
		defer zlibPool.Put(zr)
		r = zr
	default:
		return b, false, nil
	}

	// Start with room for a typical ratio, never more than the bound: the
	// buffer then doubles, each step capped at bound+1 bytes.
	out = make([]byte, 0, min(int64(len(b))*4+512, bound+1))
	for {
		if len(out) == cap(out) {
			grown := make([]byte, len(out), min(int64(cap(out))*2, bound+1))
			copy(grown, out)
			out = grown
		}
		n, rerr := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if int64(len(out)) > bound {
			return nil, true, nil
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, false, rerr
		}
	}
	if src.Len() != 0 {
		// zlib stops after its checksum (gzip refuses trailing garbage
		// itself). Bytes after the stream would never be forwarded, the
		// decoded body replaces the original, but they mark a crafted body.
		return nil, false, errTrailingData
	}
	return out, false, nil
}
