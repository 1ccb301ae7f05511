package payload

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
)

// xmlLimits are the bounds checkXML enforces. Every field must be at least 1.
type xmlLimits struct {
	maxDepth  int // element nesting
	maxTokens int // tokens in the document
	maxAttrs  int // attributes on one element
}

// XInclude namespaces: an xi:include element makes an XInclude-enabled
// parser read another resource, a file or a URL, without any DTD.
const (
	xincludeNS    = "http://www.w3.org/2001/XInclude"
	xincludeOldNS = "http://www.w3.org/2003/XInclude"
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// checkXML checks that b is one well-formed XML document, as encoding/xml
// reads it in strict mode, within l, and that it holds no markup
// declaration and no XInclude element:
//
//   - any Directive token (<!DOCTYPE, <!ENTITY, <!ELEMENT, <!ATTLIST,
//     <!NOTATION) is refused with xml_dtd_forbidden, so neither internal
//     entity expansion (billion laughs) nor external entities (XXE) can reach
//     the upstream's parser; without a DTD the only entities left are the
//     five predefined ones and character references;
//   - elements in the XInclude namespace are refused (xml_xinclude_forbidden);
//   - the document must have exactly one root element, only whitespace,
//     comments and processing instructions outside it, the XML declaration
//     only first, and no duplicate attribute (after namespace resolution):
//     encoding/xml accepts these, other parsers do not, and a document two
//     parsers read differently is how checks get bypassed;
//   - a declared encoding other than UTF-8 fails (no CharsetReader is set).
//
// The decoder streams tokens; nothing but the current token and the open
// element names is kept, and the walk stops at the first violation.
func checkXML(b []byte, l *xmlLimits) finding {
	base := int64(0)
	if bytes.HasPrefix(b, utf8BOM) {
		b, base = b[len(utf8BOM):], int64(len(utf8BOM))
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	depth, tokens, roots := 0, 0, 0
	for {
		at := base + d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF { // the clean end; a truncated document is a SyntaxError
			if roots == 0 {
				return finding{reason: ReasonInvalidXML, at: at}
			}
			return finding{}
		}
		if err != nil {
			return finding{reason: ReasonInvalidXML, at: base + d.InputOffset()}
		}
		tokens++
		if tokens > l.maxTokens {
			return finding{reason: ReasonXMLTooManyTokens, at: at, got: int64(tokens), limit: int64(l.maxTokens)}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if roots > 1 {
					return finding{reason: ReasonInvalidXML, at: at}
				}
			}
			depth++
			if depth > l.maxDepth {
				return finding{reason: ReasonXMLTooDeep, at: at, got: int64(depth), limit: int64(l.maxDepth)}
			}
			if len(t.Attr) > l.maxAttrs {
				return finding{reason: ReasonXMLTooManyAttributes, at: at, got: int64(len(t.Attr)), limit: int64(l.maxAttrs)}
			}
			if t.Name.Space == xincludeNS || t.Name.Space == xincludeOldNS {
				return finding{reason: ReasonXMLXIncludeForbidden, at: at}
			}
			if duplicateAttr(t.Attr) {
				return finding{reason: ReasonInvalidXML, at: at}
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && !xmlSpace(t) {
				return finding{reason: ReasonInvalidXML, at: at}
			}
		case xml.Directive:
			return finding{reason: ReasonXMLDTDForbidden, at: at}
		case xml.ProcInst:
			// The declaration is a processing instruction to encoding/xml;
			// it is only allowed first, and "xml" in any other case is a
			// reserved target.
			if strings.EqualFold(t.Target, "xml") && (t.Target != "xml" || tokens != 1) {
				return finding{reason: ReasonInvalidXML, at: at}
			}
		case xml.Comment:
		}
	}
}

// duplicateAttr reports whether two attributes share a name (namespace and
// local part, as resolved by the decoder).
func duplicateAttr(attrs []xml.Attr) bool {
	if len(attrs) < 2 {
		return false
	}
	if len(attrs) <= 16 {
		for i := 1; i < len(attrs); i++ {
			for j := 0; j < i; j++ {
				if attrs[i].Name == attrs[j].Name {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[xml.Name]struct{}, len(attrs))
	for _, a := range attrs {
		if _, dup := seen[a.Name]; dup {
			return true
		}
		seen[a.Name] = struct{}{}
	}
	return false
}

// xmlSpace reports whether b is only XML whitespace (space, tab, CR, LF).
func xmlSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}
