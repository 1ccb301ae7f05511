package payload

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

var unlimitedXML = xmlLimits{maxDepth: math.MaxInt, maxTokens: math.MaxInt, maxAttrs: math.MaxInt}

func TestCheckXML(t *testing.T) {
	tests := []struct {
		desc   string
		in     string
		reason string // "" when accepted
	}{
		{desc: "element", in: `<a/>`},
		{desc: "declaration", in: `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><a>t</a>`},
		{desc: "byte order mark", in: "\xef\xbb\xbf<?xml version=\"1.0\"?><a/>"},
		{desc: "comments and PIs around the root", in: "<!-- c --><?pi x?>\n<a/>\n<!-- d -->"},
		{desc: "CDATA", in: `<a><![CDATA[<!DOCTYPE x> & <b>]]></a>`},
		{desc: "namespaces", in: `<a xmlns="urn:a" xmlns:b="urn:b"><b:c b:d="1"/></a>`},
		{desc: "predefined and character references", in: `<a q="&quot;">&lt;&gt;&amp;&apos;&#65;&#x42;</a>`},
		{desc: "DOCTYPE text inside a comment", in: `<a><!-- <!DOCTYPE x [<!ENTITY y "z">]> --></a>`},
		{desc: "same local name in two namespaces", in: `<a xmlns:x="urn:x" xmlns:y="urn:y" x:n="1" y:n="2"/>`},

		{desc: "empty", in: ``, reason: ReasonInvalidXML},
		{desc: "only a comment", in: `<!-- c -->`, reason: ReasonInvalidXML},
		{desc: "text only", in: `hello`, reason: ReasonInvalidXML},
		{desc: "two roots", in: `<a/><b/>`, reason: ReasonInvalidXML},
		{desc: "text after the root", in: `<a/>x`, reason: ReasonInvalidXML},
		{desc: "CDATA outside the root", in: `<a/><![CDATA[x]]>`, reason: ReasonInvalidXML},
		{desc: "declaration not first", in: ` <?xml version="1.0"?><a/>`, reason: ReasonInvalidXML},
		{desc: "declaration inside the root", in: `<a><?xml version="1.0"?></a>`, reason: ReasonInvalidXML},
		{desc: "declaration in upper case", in: `<?XML version="1.0"?><a/>`, reason: ReasonInvalidXML},
		{desc: "other encoding", in: `<?xml version="1.0" encoding="ISO-8859-1"?><a/>`, reason: ReasonInvalidXML},
		{desc: "unclosed", in: `<a><b></b>`, reason: ReasonInvalidXML},
		{desc: "mismatched", in: `<a><b></a></b>`, reason: ReasonInvalidXML},
		{desc: "undefined entity", in: `<a>&lol;</a>`, reason: ReasonInvalidXML},
		{desc: "duplicate attribute", in: `<a x="1" x="2"/>`, reason: ReasonInvalidXML},
		{desc: "duplicate attribute through prefixes", in: `<a xmlns:p="urn:x" xmlns:q="urn:x" p:n="1" q:n="2"/>`, reason: ReasonInvalidXML},
		{desc: "invalid UTF-8", in: "<a>\xff</a>", reason: ReasonInvalidXML},
		{desc: "unquoted attribute", in: `<a x=1/>`, reason: ReasonInvalidXML},

		{desc: "DOCTYPE", in: `<!DOCTYPE a><a/>`, reason: ReasonXMLDTDForbidden},
		{desc: "DOCTYPE with internal subset", in: `<!DOCTYPE a [<!ELEMENT a ANY>]><a/>`, reason: ReasonXMLDTDForbidden},
		{desc: "ENTITY in content", in: `<a><!ENTITY x "y"></a>`, reason: ReasonXMLDTDForbidden},
		{desc: "ATTLIST", in: `<!ATTLIST a x CDATA "1"><a/>`, reason: ReasonXMLDTDForbidden},
		{desc: "XInclude 2001", in: `<a xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="x"/></a>`, reason: ReasonXMLXIncludeForbidden},
		{desc: "XInclude 2003 as root", in: `<xi:include xmlns:xi="http://www.w3.org/2003/XInclude" href="x"/>`, reason: ReasonXMLXIncludeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f := checkXML([]byte(tt.in), &unlimitedXML)
			if f.reason != tt.reason {
				t.Errorf("checkXML(%q) = %+v, want %q", tt.in, f, tt.reason)
			}
		})
	}
}

func TestCheckXMLLimits(t *testing.T) {
	lim := xmlLimits{maxDepth: 3, maxTokens: 10, maxAttrs: 2}
	tests := []struct {
		desc   string
		in     string
		reason string
	}{
		{desc: "depth at the limit", in: `<a><b><c/></b></a>`},
		{desc: "depth over the limit", in: `<a><b><c><d/></c></b></a>`, reason: ReasonXMLTooDeep},
		{desc: "depth counted per branch", in: `<a><b><c/></b><b><c/></b></a>`},
		{desc: "tokens at the limit", in: `<a>` + strings.Repeat(`<b/>`, 4) + `</a>`},
		{desc: "tokens over the limit", in: `<a>` + strings.Repeat(`<b/>`, 5) + `</a>`, reason: ReasonXMLTooManyTokens},
		{desc: "text and comments are tokens", in: `<a>t<!--c-->t<!--c-->t<!--c-->t<!--c-->t</a>`, reason: ReasonXMLTooManyTokens},
		{desc: "attributes at the limit", in: `<a x="1" y="2"/>`},
		{desc: "attributes over the limit", in: `<a x="1" y="2" z="3"/>`, reason: ReasonXMLTooManyAttributes},
		{desc: "namespace declarations are attributes", in: `<a xmlns="urn:a" xmlns:b="urn:b" x="1"/>`, reason: ReasonXMLTooManyAttributes},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f := checkXML([]byte(tt.in), &lim)
			if f.reason != tt.reason {
				t.Errorf("checkXML(%s) = %+v, want %q", tt.in, f, tt.reason)
			}
		})
	}
}

// TestCheckXMLDeepNesting checks that 100,000 open elements stop at the
// limit, and that many attributes on one element are checked for
// duplicates in linear time.
func TestCheckXMLDeepNesting(t *testing.T) {
	doc := []byte(strings.Repeat("<a>", 100_000) + strings.Repeat("</a>", 100_000))
	lim := xmlLimits{maxDepth: 64, maxTokens: math.MaxInt, maxAttrs: math.MaxInt}
	if f := checkXML(doc, &lim); f.reason != ReasonXMLTooDeep || f.got != 65 {
		t.Errorf("%+v, want xml_too_deep at 65", f)
	}
	var attrs strings.Builder
	for i := range 20000 {
		attrs.WriteString(" a" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i) + `="1"`)
	}
	wide := []byte("<a" + attrs.String() + "/>")
	if f := checkXML(wide, &unlimitedXML); !f.ok() {
		t.Errorf("20000 distinct attributes: %+v", f)
	}
	dup := []byte("<a" + attrs.String() + ` aa0="2"/>`)
	if f := checkXML(dup, &unlimitedXML); f.reason != ReasonInvalidXML {
		t.Errorf("duplicate among 20001 attributes: %+v", f)
	}
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// xmlRef is what referenceXML measures with encoding/xml's Token, written
// independently of checkXML.
type xmlRef struct {
	err                       error // the decoder's error, or nil when it reached EOF
	depth, tokens, attrs      int
	directive, xinclude       bool
	roots                     int
	textOutside, misplacedDec bool
	dupAttr                   bool
}

func referenceXML(data []byte) xmlRef {
	var ref xmlRef
	d := xml.NewDecoder(bytes.NewReader(bytes.TrimPrefix(data, utf8BOM)))
	d.Strict = true
	depth := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return ref
		}
		if err != nil {
			ref.err = err
			return ref
		}
		ref.tokens++
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				ref.roots++
			}
			depth++
			ref.depth = max(ref.depth, depth)
			ref.attrs = max(ref.attrs, len(t.Attr))
			// Only the two XInclude namespaces make an element an
			// XInclude instruction; a look-alike such as
			// http://www.w3.org/200/XInclude is an ordinary namespace.
			ref.xinclude = ref.xinclude || t.Name.Space == "http://www.w3.org/2001/XInclude" || t.Name.Space == "http://www.w3.org/2003/XInclude"
			seen := map[xml.Name]bool{}
			for _, a := range t.Attr {
				ref.dupAttr = ref.dupAttr || seen[a.Name]
				seen[a.Name] = true
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.Trim(t, " \t\r\n")) > 0 {
				ref.textOutside = true
			}
		case xml.Directive:
			ref.directive = true
		case xml.ProcInst:
			if strings.EqualFold(t.Target, "xml") && (t.Target != "xml" || ref.tokens != 1) {
				ref.misplacedDec = true
			}
		}
	}
}

// FuzzCheckXML checks checkXML against a reference walk over encoding/xml
// tokens: what it accepts is well formed, has no DTD or XInclude, and is
// within the limits; what the reference finds clean and within the limits
// is accepted; a limit it names is really crossed.
func FuzzCheckXML(f *testing.F) {
	for _, s := range []string{
		`<a/>`, `<?xml version="1.0"?><a x="1"><b>t</b><!--c--></a>`, `<!DOCTYPE a><a/>`,
		`<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>`,
		`<!DOCTYPE l [<!ENTITY a "x"><!ENTITY b "&a;&a;&a;">]><l>&b;</l>`,
		`<a xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="x"/></a>`,
		`<a><b><c><d><e/></d></c></b></a>`, `<a x="1" x="2"/>`, `<a/><b/>`, `<a><![CDATA[x]]>&amp;&#65;</a>`,
		"\xef\xbb\xbf<a/>", `<?xml version="1.0" encoding="latin1"?><a/>`, `<a>&lol;</a>`,
	} {
		f.Add([]byte(s), uint8(3), uint8(12), uint8(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, depth, tokens, attrs uint8) {
		lim := xmlLimits{maxDepth: int(depth%8) + 1, maxTokens: int(tokens%32) + 1, maxAttrs: int(attrs%4) + 1}
		got := checkXML(data, &lim)
		ref := referenceXML(data)
		clean := ref.err == nil && !ref.directive && !ref.xinclude && ref.roots == 1 && !ref.textOutside && !ref.misplacedDec && !ref.dupAttr
		within := ref.depth <= lim.maxDepth && ref.tokens <= lim.maxTokens && ref.attrs <= lim.maxAttrs
		switch got.reason {
		case "":
			if !clean || !within {
				t.Fatalf("checkXML(%q) accepted; reference %+v, limits %+v", data, ref, lim)
			}
		case ReasonXMLDTDForbidden:
			if !ref.directive {
				t.Fatalf("checkXML(%q) = dtd_forbidden without a directive", data)
			}
		case ReasonXMLXIncludeForbidden:
			if !ref.xinclude {
				t.Fatalf("checkXML(%q) = xinclude_forbidden without XInclude", data)
			}
		case ReasonXMLTooDeep:
			if ref.depth <= lim.maxDepth {
				t.Fatalf("checkXML(%q) = too deep; reference depth %d, limit %d", data, ref.depth, lim.maxDepth)
			}
		case ReasonXMLTooManyTokens:
			if ref.tokens <= lim.maxTokens {
				t.Fatalf("checkXML(%q) = too many tokens; reference %d, limit %d", data, ref.tokens, lim.maxTokens)
			}
		case ReasonXMLTooManyAttributes:
			if ref.attrs <= lim.maxAttrs {
				t.Fatalf("checkXML(%q) = too many attributes; reference %d, limit %d", data, ref.attrs, lim.maxAttrs)
			}
		case ReasonInvalidXML:
			if clean {
				t.Fatalf("checkXML(%q) = invalid_xml; the reference finds it clean: %+v", data, ref)
			}
		default:
			t.Fatalf("checkXML(%q): unexpected reason %q", data, got.reason)
		}
	})
}
