package mask

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
)

// order is a realistic API object: IDs, UUIDs, timestamps, prices, SKUs,
// versions, free text, and nothing that should be masked.
func order(i int) string {
	return fmt.Sprintf(`{"id":"ord_%08d","uuid":"550e8400-e29b-41d4-a716-4466554%05d","created_at":"2024-03-%02dT10:20:30.123Z",`+
		`"status":"shipped","total":{"amount":129.99,"currency":"EUR"},"items":[{"sku":"SKU-415-555-%04d","qty":2,"price":64.995},`+
		`{"sku":"BK-978-3-16-148410-0","qty":1,"price":12.5}],"customer_id":%d,"note":"Leave at the door, ring twice. Version 1.2.3."}`,
		i, i, i%28+1, i, 100000+i)
}

func body(size int, extra string) []byte {
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for i := 0; b.Len() < size-len(extra)-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(order(i))
	}
	b.WriteString(`],"meta":{"page":1` + extra + `}}`)
	return []byte(b.String())
}

const pii = `,"contact":{"email":"jane.doe@example.com","phone":"+1 (415) 555-0132","card":"4111 1111 1111 1111"}`

func BenchmarkMaskJSON(b *testing.B) {
	m := newMasker(b, config.Masking{Fields: []config.MaskingField{{Name: "password"}, {Name: "internal", Action: "remove"}}})
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"1KB_clean", body(1024, "")},
		{"1KB_pii", body(1024, pii)},
		{"64KB_clean", body(64<<10, "")},
		{"64KB_pii", body(64<<10, pii)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := m.MaskJSON(bc.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMaskText(b *testing.B) {
	m := newMasker(b, config.Masking{})
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"1KB_clean", body(1024, "")},
		{"64KB_clean", body(64<<10, "")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				m.MaskText(bc.body)
			}
		})
	}
}

// TestBenchBodiesClean pins that the "clean" benchmark bodies really have
// nothing to mask, and the "pii" ones exactly the three planted values.
func TestBenchBodiesClean(t *testing.T) {
	m := newMasker(t, config.Masking{})
	for _, size := range []int{1024, 64 << 10} {
		if _, fs, err := m.MaskJSON(body(size, "")); err != nil || len(fs) != 0 {
			t.Errorf("clean %d: %v %+v", size, err, fs)
		}
		if _, fs, err := m.MaskJSON(body(size, pii)); err != nil || len(fs) != 3 {
			t.Errorf("pii %d: %v %+v", size, err, fs)
		}
	}
}
