package payload

import (
	"bytes"
	"io"
	"mime/multipart"
	"strings"
	"testing"
)

// TestMultipartManyParts sends 100,000 empty parts (the CVE-2023-24536
// shape): refused at the first part over the limit.
func TestMultipartManyParts(t *testing.T) {
	body := multipartBody("b", slicesRepeat("Content-Disposition: form-data; name=\"x\"\r\n", 100_000)...)
	l := limits{multipart: multipartLimits{maxParts: 100, maxPartHeaders: 16, maxPartSize: 1 << 20}}
	var f finding
	alloc := allocated(func() { f = checkMultipart(body, "b", &l) })
	if f.reason != ReasonMultipartTooManyParts || f.part != 101 {
		t.Errorf("%+v, want multipart_too_many_parts at part 101", f)
	}
	if alloc > 1<<20 {
		t.Errorf("allocated %d bytes to refuse at part 101", alloc)
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// FuzzCheckMultipart checks that what checkMultipart accepts, the standard
// reader reads to the end within the limits.
func FuzzCheckMultipart(f *testing.F) {
	f.Add(multipartBody("b", "Content-Disposition: form-data; name=\"a\"\r\n\r\nhello"))
	f.Add(multipartBody("b", "Content-Type: application/json\r\n\r\n{\"a\":[1,2]}", "Content-Type: text/xml\r\n\r\n<a/>"))
	f.Add(multipartBody("b", "A: 1\r\nB: 2\r\nC: 3\r\n\r\nx"))
	f.Add([]byte("--b\r\n\r\nx\r\n--b\r\n\r\ny\r\n--b--"))
	f.Add([]byte("preamble\r\n--b\nA: 1\n\nbody\n--b--\nepilogue"))
	f.Add([]byte("--b\r\n\r\n" + strings.Repeat("x", 100) + "\r\n--b--\r\n"))
	l := limits{
		json:      jsonLimits{maxDepth: 3, maxKeys: 3, maxArray: 3, maxString: 8, maxNumber: 4},
		xml:       xmlLimits{maxDepth: 3, maxTokens: 10, maxAttrs: 2},
		form:      formLimits{maxFields: 3, maxField: 8},
		multipart: multipartLimits{maxParts: 3, maxPartHeaders: 2, maxPartSize: 32},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !checkMultipart(data, "b", &l).ok() {
			return
		}
		mr := multipart.NewReader(bytes.NewReader(data), "b")
		for n := 1; ; n++ {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("accepted, but part %d fails: %v", n, err)
			}
			if n > l.multipart.maxParts {
				t.Fatalf("accepted %d parts", n)
			}
			headers := 0
			for _, vs := range p.Header {
				headers += len(vs)
			}
			if headers > l.multipart.maxPartHeaders {
				t.Fatalf("accepted a part with %d headers", headers)
			}
			b, err := io.ReadAll(p)
			if err != nil || int64(len(b)) > l.multipart.maxPartSize {
				t.Fatalf("accepted part %d of %d bytes (%v)", n, len(b), err)
			}
			if kind, _ := mediaType(p.Header.Get("Content-Type")); kind == kindJSON || kind == kindXML || kind == kindForm {
				if f := l.check(kind, b); !f.ok() {
					t.Fatalf("accepted part %d whose content fails its own check: %+v", n, f)
				}
			}
		}
	})
}
