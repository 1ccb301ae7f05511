package mask

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
)

func newMasker(t testing.TB, cfg config.Masking) *Masker {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func jwtOf(header, payload, sig string) string {
	e := base64.RawURLEncoding.EncodeToString
	return e([]byte(header)) + "." + e([]byte(payload)) + "." + sig
}

var (
	testJWT      = jwtOf(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"1234567890","name":"John Doe"}`, "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
	testMoatKey  = "moat_4fT9xQ2a_" + strings.Repeat("Zk3a", 10) + "Zk3_0Ab9Xz"
	testPEM      = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234abcd\n+/=xyz\n-----END RSA PRIVATE KEY-----"
	testAzureKey = strings.Repeat("aB3+", 21) + "aB" + "=="
)

// TestDetectors runs each detector over true positives and tricky
// negatives; want is the masked text, so a test names exactly what matched.
func TestDetectors(t *testing.T) {
	m := newMasker(t, config.Masking{})
	tests := []struct {
		desc string
		in   string
		want string // "" means unchanged
		det  []string
	}{
		// Payment cards.
		{desc: "visa plain", in: "card 4111111111111111 ok", want: "card ************1111 ok", det: []string{"card"}},
		{desc: "visa spaced", in: "4111 1111 1111 1111", want: "**** **** **** 1111", det: []string{"card"}},
		{desc: "mastercard dashed", in: "5500-0000-0000-0004.", want: "****-****-****-0004.", det: []string{"card"}},
		{desc: "mastercard 2-series", in: "2223000048400011", want: "************0011", det: []string{"card"}},
		{desc: "amex 4-6-5", in: "(3782 822463 10005)", want: "(**** ****** *0005)", det: []string{"card"}},
		{desc: "discover", in: "6011000990139424", want: "************9424", det: []string{"card"}},
		{desc: "jcb", in: "3530111333300000", want: "************0000", det: []string{"card"}},
		{desc: "diners 14", in: "30569309025904", want: "**********5904", det: []string{"card"}},
		{desc: "visa 13", in: "4222222222222", want: "*********2222", det: []string{"card"}},
		{desc: "card followed by a year", in: "4111 1111 1111 1111 2024", want: "**** **** **** 1111 2024", det: []string{"card"}},
		{desc: "card after a label and hyphen", in: "ref-4111111111111111", want: "ref-************1111", det: []string{"card"}},
		{desc: "order id fails luhn", in: "order 4111111111111112"},
		{desc: "luhn-valid but unknown prefix", in: "id 1234567812345670"},
		{desc: "unix millis", in: "ts 1700000000000"},
		{desc: "20 digits", in: "41111111111111110000"},
		{desc: "mixed separators", in: "4111 1111-1111 1111"},
		{desc: "dash continues", in: "4111-1111-1111-1111-2024"},
		{desc: "decimal", in: "1.4111111111111111"},
		{desc: "inside word", in: "x4111111111111111"},
		{desc: "isbn-13", in: "ISBN 978-3-16-148410-0 and 9783161484100"},
		{desc: "visa length 15", in: "411111111111116"},
		{desc: "price", in: "total 1299.99 EUR"},

		// IBANs.
		{desc: "iban electronic", in: "DE89370400440532013000", want: "DE****************3000", det: []string{"iban"}},
		{desc: "iban print", in: "IBAN: GB82 WEST 1234 5698 7654 32.", want: "IBAN: GB** **** **** **** **54 32.", det: []string{"iban"}},
		{desc: "iban norway", in: "NO9386011117947", want: "NO*********7947", det: []string{"iban"}},
		{desc: "iban bad checksum", in: "DE89370400440532013001"},
		{desc: "iban wrong length", in: "DE8937040044053201300"},
		{desc: "iban unknown country", in: "ZZ89370400440532013000"},
		{desc: "iban lower case", in: "de89370400440532013000"},
		{desc: "iban longer token", in: "DE89370400440532013000X"},

		// SSNs.
		{desc: "ssn", in: "SSN 123-45-6789.", want: "SSN ***-**-6789.", det: []string{"ssn"}},
		{desc: "ssn area 000", in: "000-12-3456"},
		{desc: "ssn area 666", in: "666-12-3456"},
		{desc: "ssn area 9xx", in: "912-34-5678"},
		{desc: "ssn group 00", in: "123-00-6789"},
		{desc: "ssn serial 0000", in: "123-45-0000"},
		{desc: "ssn without dashes", in: "123456789"},
		{desc: "ssn in longer dashed number", in: "123-45-6789-1"},
		{desc: "date", in: "2024-01-15T10:20:30Z"},

		// E-mail.
		{desc: "email", in: "mail john.doe+x@example.com now", want: "mail j***@example.com now", det: []string{"email"}},
		{desc: "email end of sentence", in: "Write to a@b.example.org.", want: "Write to a***@b.example.org.", det: []string{"email"}},
		{desc: "email in angle brackets", in: "<jane@corp.io>", want: "<j***@corp.io>", det: []string{"email"}},
		{desc: "two emails", in: "a@x.io,b@y.io", want: "a***@x.io,b***@y.io", det: []string{"email", "email"}},
		{desc: "retina asset", in: "logo@2x.png"},
		{desc: "npm version", in: "lodash@4.17.21"},
		{desc: "scoped package", in: "@types/node"},
		{desc: "no tld", in: "root@localhost"},
		{desc: "numeric tld", in: "a@1.2.3.4"},
		{desc: "handle", in: "ping @john"},

		// Phones.
		{desc: "e164", in: "tel +14155550132", want: "tel +*********32", det: []string{"phone"}},
		{desc: "e164 spaced", in: "+44 20 7946 0958", want: "+** ** **** **58", det: []string{"phone"}},
		{desc: "e164 parens", in: "+1 (415) 555-0132", want: "+* (***) ***-**32", det: []string{"phone"}},
		{desc: "nanp dashed", in: "call 415-555-0132", want: "call ***-***-**32", det: []string{"phone"}},
		{desc: "nanp parens", in: "(415) 555-0132", want: "(***) ***-**32", det: []string{"phone"}},
		{desc: "nanp dotted with 1", in: "1.800.555.0199", want: "*.***.***.**99", det: []string{"phone"}},
		{desc: "nanp bare digits", in: "4155550132"},
		{desc: "nanp bad area", in: "123-456-7890"},
		{desc: "nanp mixed separators", in: "415-555.0132"},
		{desc: "e164 too short", in: "+4420794"},
		{desc: "e164 too long", in: "+1234567890123456"},
		{desc: "plus zero", in: "+0123456789012"},
		{desc: "product code", in: "SKU-415-555-0132"},
		{desc: "version", in: "v4.155.550.132"},
		{desc: "uuid", in: "550e8400-e29b-41d4-a716-446655440000"},

		// Secrets.
		{desc: "jwt", in: "Bearer " + testJWT, want: "Bearer [REDACTED:jwt]", det: []string{"jwt"}},
		{desc: "jwt alg none", in: jwtOf(`{"alg":"none"}`, `{"a":1}`, ""), want: "[REDACTED:jwt]", det: []string{"jwt"}},
		{desc: "jwt header without alg", in: jwtOf(`{"typ":"JWT"}`, `{"a":1}`, "sig")},
		{desc: "eyJ not base64 json", in: "eyJhbGciOi.eyJzdWIi.abc"},
		{desc: "two segments", in: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0"},
		{desc: "moat key", in: "key=" + testMoatKey, want: "key=[REDACTED:moat_api_key]", det: []string{"moat_api_key"}},
		{desc: "moat key short", in: "moat_4fT9xQ2a_abc_0Ab9Xz"},
		{desc: "aws", in: "AKIAIOSFODNN7EXAMPLE", want: "[REDACTED:aws_access_key]", det: []string{"aws_access_key"}},
		{desc: "aws sts", in: "id=ASIAY34FZKBOKMUTVV7A;", want: "id=[REDACTED:aws_access_key];", det: []string{"aws_access_key"}},
		{desc: "aws too long", in: "AKIAIOSFODNN7EXAMPLEX"},
		{desc: "aws lower", in: "AKIAiosfodnn7example"},
		{desc: "github", in: "ghp_" + strings.Repeat("a1B2", 9), want: "[REDACTED:github_token]", det: []string{"github_token"}},
		{desc: "github pat", in: "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", want: "[REDACTED:github_token]", det: []string{"github_token"}},
		{desc: "github short", in: "ghp_abc123"},
		{desc: "slack", in: "xoxb-123456789012-abcdefABCDEF", want: "[REDACTED:slack_token]", det: []string{"slack_token"}},
		{desc: "slack other", in: "xoxz-123456789012-abcdefABCDEF"},
		{desc: "stripe", in: "sk_live_" + strings.Repeat("4eC39HqLyjWDarjtT1zdp7dc", 1), want: "[REDACTED:stripe_key]", det: []string{"stripe_key"}},
		{desc: "stripe restricted", in: "rk_live_51H8abcdefghijklmnop", want: "[REDACTED:stripe_key]", det: []string{"stripe_key"}},
		{desc: "stripe test key", in: "sk_test_4eC39HqLyjWDarjtT1zdp7dc"},
		{desc: "google", in: "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", want: "[REDACTED:google_api_key]", det: []string{"google_api_key"}},
		{desc: "google short", in: "AIzaSyDaGmWKa4JsXZ"},
		{desc: "azure", in: "AccountName=x;AccountKey=" + testAzureKey + ";EndpointSuffix=core.windows.net", want: "AccountName=x;AccountKey=[REDACTED:azure_storage_key];EndpointSuffix=core.windows.net", det: []string{"azure_storage_key"}},
		{desc: "pem", in: "k: " + testPEM + " end", want: "k: [REDACTED:private_key] end", det: []string{"private_key"}},
		{desc: "pem truncated", in: "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\nkqhkiG9w0B", want: "[REDACTED:private_key]", det: []string{"private_key"}},
		{desc: "pem public key", in: "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----"},
		{desc: "pem certificate", in: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},

		// Nothing at all.
		{desc: "prose", in: "The quick brown fox, version 1.2.3, costs $12.50 (order #12345)."},
		{desc: "empty", in: ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			out, fs := m.MaskText([]byte(tc.in))
			want := tc.want
			if want == "" {
				want = tc.in
			}
			if string(out) != want {
				t.Errorf("MaskText(%q) = %q, want %q", tc.in, out, want)
			}
			var got []string
			for _, f := range fs {
				got = append(got, f.Detector)
				if f.Action != ActionMask || f.Path != "" {
					t.Errorf("finding %+v: want action mask and no path", f)
				}
			}
			if !slices.Equal(got, tc.det) {
				t.Errorf("detectors = %v, want %v", got, tc.det)
			}
		})
	}
}

func TestLuhnAndPrefix(t *testing.T) {
	tests := []struct {
		desc string
		in   string
		want bool
	}{
		{desc: "valid visa", in: "4111111111111111", want: true},
		{desc: "one digit off", in: "4111111111111121", want: false},
		{desc: "all zeros", in: "0000000000000000", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			d := []byte(tc.in)
			if got := luhn(d) && cardPrefixOK(d); got != tc.want {
				t.Errorf("card(%s) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestIBANTableMatchesRegistry(t *testing.T) {
	// A few well-known lengths; a typo in the table would shift them.
	for cc, l := range map[string]int{"DE": 22, "FR": 27, "GB": 22, "NL": 18, "NO": 15, "MT": 31, "RU": 33, "LC": 32} {
		if got := int(ibanLengths[int(cc[0]-'A')*26+int(cc[1]-'A')]); got != l {
			t.Errorf("length of %s = %d, want %d", cc, got, l)
		}
	}
}

func TestEveryConfigDetectorImplemented(t *testing.T) {
	for _, name := range config.MaskingGroup(config.MaskingGroupAll) {
		if detectors[detectorID(name)].name != name {
			t.Errorf("detector %s mismapped", name)
		}
	}
	if n := len(config.MaskingGroup(config.MaskingGroupAll)); n != int(numDetectors) {
		t.Errorf("config lists %d detectors, package has %d", n, numDetectors)
	}
}
