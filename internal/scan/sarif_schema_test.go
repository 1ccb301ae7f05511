package scan_test

import (
	"bytes"
	"errors"
	"io/fs"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/moat-gateway/moat/examples/vulnapi"
	"github.com/moat-gateway/moat/internal/lint"
	"github.com/moat-gateway/moat/internal/scan"
)

// sarifSchema is the SARIF 2.1.0 JSON Schema of Microsoft's SARIF SDK
// (provenance in testdata/sarif-schema-2.1.0.md). Should it be removed, the
// test is skipped rather than run against an imitation.
const sarifSchema = "testdata/sarif-schema-2.1.0.json"

// TestSARIFValidatesAgainstSchema writes the SARIF logs of a scan of the
// vulnerable sample API, of moat lint on the example configuration and of
// an empty report, and validates them against the SARIF 2.1.0 schema; two
// controls check that the schema refuses broken logs.
func TestSARIFValidatesAgainstSchema(t *testing.T) {
	f, err := os.Open(sarifSchema)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s is not vendored", sarifSchema)
	}
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("https://moat.invalid/sarif-schema-2.1.0.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("https://moat.invalid/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}

	api := vulnapi.New(vulnapi.Options{})
	srv := httptest.NewServer(api)
	defer srv.Close()
	spec, err := scan.LoadSpec("../../examples/vulnapi/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := scan.Run(t.Context(), scan.Options{
		Target: srv.URL, Spec: spec, Rate: 5000, MaxRequests: 500, SSRFWait: 300 * time.Millisecond, AllowDestructive: true,
		Identities: []scan.Identity{
			{Name: "alice", Header: "Authorization", Value: "Bearer " + api.AliceToken()},
			{Name: "bob", Header: "X-API-Key", Value: vulnapi.BobKey},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("MOAT_AUDIT_KEY", "test-audit-key-0123456789abcdef0123456789")
	lrep, err := lint.Load("../../examples/vulnapi.moat.yaml", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) == 0 || len(lrep.Findings) == 0 {
		t.Fatalf("reports without findings prove little: scan %d, lint %d", len(rep.Findings), len(lrep.Findings))
	}
	for _, tc := range []struct {
		desc    string
		rep     *scan.Report
		corrupt func([]byte) []byte // makes the log invalid; nil: valid
	}{
		{desc: "scan of the vulnerable API", rep: rep},
		{desc: "moat lint of the example configuration", rep: lrep},
		{desc: "empty report", rep: &scan.Report{Spec: "openapi.yaml", Findings: []scan.Finding{}}},
		{desc: "control: an unknown level is refused", rep: rep, corrupt: func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"level": "error"`), []byte(`"level": "severe"`), 1)
		}},
		{desc: "control: a result without message is refused", rep: rep, corrupt: func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"message": {`), []byte(`"msg": {`), 1)
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var b bytes.Buffer
			if err := scan.WriteReport(&b, tc.rep, "sarif"); err != nil {
				t.Fatal(err)
			}
			out := b.Bytes()
			if tc.corrupt != nil {
				broken := tc.corrupt(out)
				if bytes.Equal(broken, out) {
					t.Fatal("control did not change the log")
				}
				out = broken
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			err = schema.Validate(inst)
			switch {
			case tc.corrupt == nil && err != nil:
				t.Errorf("SARIF output does not validate: %v", err)
			case tc.corrupt != nil && err == nil:
				t.Error("the schema accepted an invalid log")
			}
		})
	}
}
