package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
)

// detID indexes the detectors table.
type detID uint8

const (
	detCard detID = iota
	detIBAN
	detSSN
	detEmail
	detPhone
	detJWT
	detPrivateKey
	detMoatKey
	detAWS
	detGitHub
	detSlack
	detStripe
	detGoogle
	detAzure
	numDetectors
)

// detector describes one detector: its configuration name, whether it finds
// secrets (always replaced in full), and the bytes at which a match can
// start, so the scanner looks only there.
type detector struct {
	name     string
	secret   bool
	triggers string
}

var detectors = [numDetectors]detector{
	detCard:       {name: "card", triggers: "0123456789"},
	detIBAN:       {name: "iban", triggers: "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
	detSSN:        {name: "ssn", triggers: "012345678"},
	detEmail:      {name: "email", triggers: "@"},
	detPhone:      {name: "phone", triggers: "123456789+("},
	detJWT:        {name: "jwt", secret: true, triggers: "e"},
	detPrivateKey: {name: "private_key", secret: true, triggers: "-"},
	detMoatKey:    {name: "moat_api_key", secret: true, triggers: "m"},
	detAWS:        {name: "aws_access_key", secret: true, triggers: "A"},
	detGitHub:     {name: "github_token", secret: true, triggers: "g"},
	detSlack:      {name: "slack_token", secret: true, triggers: "x"},
	detStripe:     {name: "stripe_key", secret: true, triggers: "sr"},
	detGoogle:     {name: "google_api_key", secret: true, triggers: "A"},
	detAzure:      {name: "azure_storage_key", secret: true, triggers: "A"},
}

// detectorID returns the ID of a detector name known to config.
func detectorID(name string) detID {
	for i, d := range detectors {
		if d.name == name {
			return detID(i)
		}
	}
	panic("mask: detector " + name + " has no implementation")
}

// match is one detected value: s[start:end].
type match struct {
	start, end int
	det        detID
}

// scan appends to dst every match in s, left to right, without overlaps.
// It looks only at bytes where an enabled detector can start, and only at
// word boundaries; each detector then parses its exact grammar and
// validates checksums, so a typical string costs one table lookup per byte.
func (m *Masker) scan(s []byte, dst []match) []match {
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		// Every detector but e-mail starts at a word boundary; checking it
		// here keeps the common case (letters inside words) to two table
		// lookups.
		if !m.trigger[c] || (c != '@' && i > 0 && wordTab[s[i-1]]) {
			continue
		}
		start, end, det := m.matchAt(s, i, last)
		if end > 0 {
			dst = append(dst, match{start: start, end: end, det: det})
			last = end
			i = end - 1
		}
	}
	return dst
}

// matchAt tries every enabled detector that can start at s[i] (e-mail
// addresses are found at their '@' and extend back, but not before last).
// It returns end 0 for no match.
func (m *Masker) matchAt(s []byte, i, last int) (start, end int, det detID) {
	c := s[i]
	if c == '@' {
		if m.enabled[detEmail] {
			if st, e := matchEmail(s, i, last); e > 0 {
				return st, e, detEmail
			}
		}
		return 0, 0, 0
	}
	if i > 0 && isWord(s[i-1]) {
		return 0, 0, 0
	}
	try := func(d detID, e int) bool {
		if e > 0 {
			start, end, det = i, e, d
			return true
		}
		return false
	}
	switch {
	case isDigit(c):
		if numericBefore(s, i) {
			return 0, 0, 0
		}
		if m.enabled[detSSN] && try(detSSN, matchSSN(s, i)) ||
			m.enabled[detCard] && try(detCard, matchCard(s, i)) ||
			m.enabled[detPhone] && !attachedBefore(s, i) && try(detPhone, matchNANP(s, i)) {
			return
		}
	case c == '+':
		if m.enabled[detPhone] && (i == 0 || s[i-1] != '+') && try(detPhone, matchE164(s, i)) {
			return
		}
	case c == '(':
		if m.enabled[detPhone] && try(detPhone, matchNANP(s, i)) {
			return
		}
	case c == '-':
		if m.enabled[detPrivateKey] && (i == 0 || s[i-1] != '-') && try(detPrivateKey, matchPrivateKey(s, i)) {
			return
		}
	case c >= 'A' && c <= 'Z':
		if m.enabled[detAWS] && try(detAWS, matchAWS(s, i)) ||
			m.enabled[detGoogle] && try(detGoogle, matchGoogle(s, i)) ||
			m.enabled[detIBAN] && try(detIBAN, matchIBAN(s, i)) {
			return
		}
		if m.enabled[detAzure] {
			if st, e := matchAzure(s, i); e > 0 {
				return st, e, detAzure
			}
		}
	case c == 'e':
		if m.enabled[detJWT] && try(detJWT, matchJWT(s, i)) {
			return
		}
	case c == 'm':
		if m.enabled[detMoatKey] && try(detMoatKey, matchMoatKey(s, i)) {
			return
		}
	case c == 'g':
		if m.enabled[detGitHub] && try(detGitHub, matchGitHub(s, i)) {
			return
		}
	case c == 'x':
		if m.enabled[detSlack] && try(detSlack, matchSlack(s, i)) {
			return
		}
	case c == 's' || c == 'r':
		if m.enabled[detStripe] && try(detStripe, matchStripe(s, i)) {
			return
		}
	}
	return 0, 0, 0
}

// Character classes.

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }
func isWord(c byte) bool  { return wordTab[c] }

// wordTab marks [A-Za-z0-9_].
var wordTab = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isAlnum(byte(c)) || c == '_'
	}
	return t
}()

func isB64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

// isNumSep reports the characters that continue a number (decimals, dates,
// times, versions, ranges, paths): a digit run next to one of them and a
// digit is part of a longer token.
func isNumSep(c byte) bool { return c == '.' || c == ',' || c == '-' || c == '/' || c == ':' }

// numericBefore reports whether the digit at s[i] continues a number token
// to its left ("1.4111...", "2024-01-...", "v1.2").
func numericBefore(s []byte, i int) bool {
	return i >= 2 && isNumSep(s[i-1]) && isDigit(s[i-2])
}

// attachedBefore reports whether s[i] follows a word and a number
// separator ("SKU-415...", "v4.155..."): phone numbers are not matched
// there, to keep product codes and versions out.
func attachedBefore(s []byte, i int) bool {
	return i >= 2 && isNumSep(s[i-1]) && isWord(s[i-2])
}

// numericEnd reports whether a numeric match may end at e: not followed by a
// word character, nor by a number separator and a digit.
func numericEnd(s []byte, e int) bool {
	if e == len(s) {
		return true
	}
	if isWord(s[e]) {
		return false
	}
	return !(isNumSep(s[e]) && e+1 < len(s) && isDigit(s[e+1]))
}

func hasPrefix(s []byte, i int, p string) bool {
	return len(s)-i >= len(p) && string(s[i:i+len(p)]) == p
}

// countRun returns how many bytes from s[i] satisfy ok, at most max+1.
func countRun(s []byte, i, max int, ok func(byte) bool) int {
	n := 0
	for i+n < len(s) && ok(s[i+n]) && n <= max {
		n++
	}
	return n
}

// Payment cards.

// matchCard matches 13 to 19 digits, written together or in groups of 3 to 6
// separated by one kind of separator (space or hyphen), that pass the Luhn
// check and start with an issuer prefix whose length fits. Of several
// groupings the longest valid one wins.
func matchCard(s []byte, i int) int {
	var d [19]byte
	var ends, counts [19]int
	var shapeOK [19]bool
	n, ng, j := 0, 0, i
	var sep byte
	short := true // every group so far has 3 to 6 digits
	for {
		st := j
		for j < len(s) && isDigit(s[j]) && n < 19 {
			d[n] = s[j]
			n++
			j++
		}
		if j < len(s) && isDigit(s[j]) { // a 20th digit: no card here
			if ng == 0 {
				return 0
			}
			break
		}
		gl := j - st
		short = short && gl >= 3 && gl <= 6
		ends[ng], counts[ng], shapeOK[ng] = j, n, ng == 0 || short
		ng++
		if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && (sep == 0 || s[j] == sep) && isDigit(s[j+1]) && ng < 19 {
			sep = s[j]
			j++
			continue
		}
		break
	}
	for k := ng - 1; k >= 0; k-- {
		cnt := counts[k]
		if cnt < 13 {
			break
		}
		if !shapeOK[k] || !numericEnd(s, ends[k]) {
			continue
		}
		if luhn(d[:cnt]) && cardPrefixOK(d[:cnt]) {
			return ends[k]
		}
	}
	return 0
}

// luhn reports whether the digits pass the Luhn (mod 10) check.
func luhn(d []byte) bool {
	sum, dbl := 0, false
	for k := len(d) - 1; k >= 0; k-- {
		v := int(d[k] - '0')
		if dbl {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		dbl = !dbl
	}
	return sum%10 == 0
}

// cardPrefixOK checks the issuer identification number against the major
// schemes and the lengths they issue.
func cardPrefixOK(d []byte) bool {
	n := len(d)
	p := func(k int) int {
		v := 0
		for _, c := range d[:k] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	in := func(lo, hi int) bool { return n >= lo && n <= hi }
	switch d[0] {
	case '4': // Visa
		return n == 13 || n == 16 || n == 19
	case '5':
		p2 := p(2)
		switch {
		case p2 >= 51 && p2 <= 55: // Mastercard
			return n == 16
		case p2 == 50 || (p2 >= 56 && p2 <= 58): // Maestro
			return in(13, 19)
		}
	case '2':
		p4 := p(4)
		switch {
		case p4 >= 2221 && p4 <= 2720: // Mastercard 2-series
			return n == 16
		case p4 >= 2200 && p4 <= 2204: // Mir
			return in(16, 19)
		}
	case '3':
		p2, p3, p4 := p(2), p(3), p(4)
		switch {
		case p2 == 34 || p2 == 37: // American Express
			return n == 15
		case p3 >= 300 && p3 <= 305, p2 == 36, p2 == 38, p2 == 39: // Diners Club
			return in(14, 19)
		case p4 >= 3528 && p4 <= 3589: // JCB
			return in(16, 19)
		}
	case '6': // Discover, UnionPay, RuPay, Maestro
		return in(13, 19)
	case '8': // RuPay
		p2 := p(2)
		return (p2 == 81 || p2 == 82) && n == 16
	}
	return false
}

// US Social Security numbers.

// matchSSN matches AAA-GG-SSSS with a valid area (not 000, 666 or 900-999),
// group (not 00) and serial (not 0000).
func matchSSN(s []byte, i int) int {
	if len(s)-i < 11 || s[i+3] != '-' || s[i+6] != '-' {
		return 0
	}
	for _, k := range [...]int{0, 1, 2, 4, 5, 7, 8, 9, 10} {
		if !isDigit(s[i+k]) {
			return 0
		}
	}
	a := string(s[i : i+3])
	if a == "000" || a == "666" || a[0] == '9' || string(s[i+4:i+6]) == "00" || string(s[i+7:i+11]) == "0000" {
		return 0
	}
	if !numericEnd(s, i+11) {
		return 0
	}
	return i + 11
}

// Phone numbers.

// matchE164 matches '+', a country code digit 1-9, and 10 to 15 digits in
// all, optionally grouped by single spaces, hyphens or dots, with at most one
// parenthesized group of 1 to 4 digits: +14155550132, +44 20 7946 0958,
// +1 (415) 555-0132, +44 (0)20 7946 0958.
func matchE164(s []byte, i int) int {
	j := i + 1
	if j >= len(s) || s[j] < '1' || s[j] > '9' {
		return 0
	}
	n, parens := 0, false
	for j < len(s) {
		c := s[j]
		switch {
		case isDigit(c):
			n++
			j++
			continue
		case (c == ' ' || c == '-' || c == '.') && j+1 < len(s) && (isDigit(s[j+1]) || s[j+1] == '('):
			j++
			continue
		case c == '(' && !parens:
			k := j + 1
			for k < len(s) && isDigit(s[k]) && k-j <= 4 {
				k++
			}
			if k < len(s) && s[k] == ')' && k > j+1 && k+1 < len(s) && (isDigit(s[k+1]) || s[k+1] == ' ') {
				n += k - j - 1
				parens = true
				j = k + 1
				if s[j] == ' ' {
					j++
				}
				continue
			}
		}
		break
	}
	if n < 10 || n > 15 || !isDigit(s[j-1]) || !numericEnd(s, j) {
		return 0
	}
	return j
}

// matchNANP matches North American numbers with separators: 415-555-0132,
// 415.555.0132, 415 555 0132 (one separator throughout), (415) 555-0132,
// (415)555-0132, each optionally after "1-", "1." or "1 ". Area code and
// exchange start with 2-9. Ten digits without separators are not matched.
func matchNANP(s []byte, i int) int {
	j := i
	if s[j] == '1' && j+1 < len(s) && (s[j+1] == '-' || s[j+1] == '.' || s[j+1] == ' ') {
		j += 2
	}
	nxx := func(k int) bool {
		return k+3 <= len(s) && s[k] >= '2' && s[k] <= '9' && isDigit(s[k+1]) && isDigit(s[k+2])
	}
	four := func(k int) bool {
		return k+4 <= len(s) && isDigit(s[k]) && isDigit(s[k+1]) && isDigit(s[k+2]) && isDigit(s[k+3])
	}
	if j < len(s) && s[j] == '(' {
		if !nxx(j+1) || j+4 >= len(s) || s[j+4] != ')' {
			return 0
		}
		j += 5
		if j < len(s) && s[j] == ' ' {
			j++
		}
		if !nxx(j) || j+3 >= len(s) || (s[j+3] != '-' && s[j+3] != '.' && s[j+3] != ' ') || !four(j+4) {
			return 0
		}
		j += 8
	} else {
		if !nxx(j) || j+3 >= len(s) {
			return 0
		}
		sep := s[j+3]
		if (sep != '-' && sep != '.' && sep != ' ') || !nxx(j+4) || j+7 >= len(s) || s[j+7] != sep || !four(j+8) {
			return 0
		}
		j += 12
	}
	if !numericEnd(s, j) {
		return 0
	}
	return j
}

// IBANs.

// ibanLengths holds the IBAN length of each country of the SWIFT IBAN
// registry, indexed by (first letter)*26 + second letter.
var ibanLengths = func() (t [26 * 26]uint8) {
	const table = "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 " +
		"EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HN28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 " +
		"KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 " +
		"PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 " +
		"VG24 XK20 YE30"
	for k := 0; k+4 <= len(table); k += 5 {
		t[int(table[k]-'A')*26+int(table[k+1]-'A')] = (table[k+2]-'0')*10 + table[k+3] - '0'
	}
	return t
}()

// matchIBAN matches an IBAN in electronic form (DE89370400440532013000) or
// print form (DE89 3704 0044 0532 0130 00), upper case, of exactly its
// country's length, that passes the ISO 13616 mod-97 check.
func matchIBAN(s []byte, i int) int {
	if len(s)-i < 15 || !isUpper(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) {
		return 0
	}
	l := int(ibanLengths[int(s[i]-'A')*26+int(s[i+1]-'A')])
	if l == 0 {
		return 0
	}
	var buf [34]byte
	n, j, spaced := 0, i, false
	for n < l {
		if n > 0 && n%4 == 0 {
			switch {
			case n == 4 && j < len(s) && s[j] == ' ':
				spaced = true
				j++
			case spaced:
				if j >= len(s) || s[j] != ' ' {
					return 0
				}
				j++
			}
		}
		if j >= len(s) || !(isUpper(s[j]) || isDigit(s[j])) {
			return 0
		}
		buf[n] = s[j]
		n++
		j++
	}
	if j < len(s) && isWord(s[j]) {
		return 0
	}
	if check := (buf[2]-'0')*10 + buf[3] - '0'; check < 2 || check > 98 {
		return 0
	}
	rem := 0
	for k := 0; k < l; k++ {
		c := buf[(k+4)%l]
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A') + 10) % 97
		}
	}
	if rem != 1 {
		return 0
	}
	return j
}

// E-mail addresses.

func isLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

// fileExtensions are top-level "domains" that are in practice file names
// (logo@2x.png), not mail domains.
var fileExtensions = map[string]bool{
	"png": true, "jpg": true, "jpeg": true, "gif": true, "svg": true, "webp": true, "ico": true, "bmp": true,
	"css": true, "js": true, "mjs": true, "json": true, "html": true, "htm": true, "xml": true, "txt": true,
	"pdf": true, "zip": true, "gz": true, "tar": true, "mp3": true, "mp4": true, "woff": true, "woff2": true, "ttf": true,
}

// matchEmail matches local@domain around the '@' at s[at]: a local part of
// 1 to 64 characters from [A-Za-z0-9._%+-] not starting or ending with a dot,
// and a domain of at least two labels ([A-Za-z0-9-], not starting or ending
// with '-') whose last label is 2 to 63 letters and not a file extension.
// The local part does not extend before last.
func matchEmail(s []byte, at, last int) (start, end int) {
	st := at
	for st > last && at-st <= 64 && isLocal(s[st-1]) {
		st--
	}
	for st < at && s[st] == '.' {
		st++
	}
	if st == at || at-st > 64 || s[at-1] == '.' {
		return 0, 0
	}
	labels, tld, j := 0, 0, at+1
	for {
		ls := j
		for j < len(s) && (isAlnum(s[j]) || s[j] == '-') && j-ls < 64 {
			j++
		}
		if j == ls || j-ls > 63 || s[ls] == '-' || s[j-1] == '-' {
			if labels == 0 {
				return 0, 0
			}
			j = end
			break
		}
		if j-at > 254 {
			return 0, 0
		}
		labels++
		end, tld = j, ls
		if j+1 < len(s) && s[j] == '.' && isAlnum(s[j+1]) {
			j++
			continue
		}
		break
	}
	if labels < 2 || end-at-1 > 253 || end-tld < 2 || end-tld > 63 {
		return 0, 0
	}
	for k := tld; k < end; k++ {
		if !isAlpha(s[k]) {
			return 0, 0
		}
	}
	if end-tld <= 5 {
		var low [5]byte
		for k := tld; k < end; k++ {
			low[k-tld] = s[k] | 0x20
		}
		if fileExtensions[string(low[:end-tld])] {
			return 0, 0
		}
	}
	if end < len(s) && (isWord(s[end]) || s[end] == '@' || s[end] == '-') {
		return 0, 0
	}
	return st, end
}

// Secrets.

// matchJWT matches a compact JWS (three base64url segments, the last may be
// empty) or JWE (five) whose first segment decodes to a JSON object with an
// "alg" member.
func matchJWT(s []byte, i int) int {
	if !hasPrefix(s, i, "eyJ") || (i > 0 && (s[i-1] == '-' || s[i-1] == '.')) {
		return 0
	}
	var segs [5][2]int
	n, j := 0, i
	for {
		st := j
		for j < len(s) && isB64URL(s[j]) {
			j++
		}
		segs[n] = [2]int{st, j}
		n++
		if n < 5 && j < len(s) && s[j] == '.' {
			j++
			continue
		}
		break
	}
	// Three segments (the signature may be empty: alg none) or five (JWE,
	// whose encrypted-key segment may be empty); nothing more after them.
	if (n != 3 && n != 5) || (j < len(s) && s[j] == '.') {
		return 0
	}
	if n == 3 && segs[1][1] == segs[1][0] {
		return 0
	}
	h := s[segs[0][0]:segs[0][1]]
	if len(h) > 8192 {
		return 0
	}
	hdr := make([]byte, base64.RawURLEncoding.DecodedLen(len(h)))
	k, err := base64.RawURLEncoding.Strict().Decode(hdr, h)
	if err != nil {
		return 0
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(hdr[:k], &fields) != nil {
		return 0
	}
	if _, ok := fields["alg"]; !ok {
		return 0
	}
	return j
}

// matchMoatKey matches moat_<8>_<43>_<6> (alphanumeric parts).
func matchMoatKey(s []byte, i int) int {
	if !hasPrefix(s, i, "moat_") {
		return 0
	}
	j := i + 5
	for k, want := range [...]int{8, 43, 6} {
		if k > 0 {
			if j >= len(s) || s[j] != '_' {
				return 0
			}
			j++
		}
		if countRun(s, j, want, isAlnum) != want {
			return 0
		}
		j += want
	}
	if j < len(s) && isWord(s[j]) {
		return 0
	}
	return j
}

func isUpperOrDigit(c byte) bool { return isUpper(c) || isDigit(c) }

// matchAWS matches AWS access key IDs: AKIA or ASIA and 16 of [0-9A-Z].
func matchAWS(s []byte, i int) int {
	if !hasPrefix(s, i, "AKIA") && !hasPrefix(s, i, "ASIA") {
		return 0
	}
	if countRun(s, i+4, 16, isUpperOrDigit) != 16 || (i+20 < len(s) && isAlnum(s[i+20])) {
		return 0
	}
	return i + 20
}

// matchGoogle matches Google API keys: AIza and 35 of [0-9A-Za-z_-].
func matchGoogle(s []byte, i int) int {
	if !hasPrefix(s, i, "AIza") || countRun(s, i+4, 35, isB64URL) != 35 {
		return 0
	}
	return i + 39
}

// matchAzure matches the key of an Azure Storage connection string
// (AccountKey= followed by 86 base64 characters and "=="); the match is the
// key only.
func matchAzure(s []byte, i int) (start, end int) {
	const p = "AccountKey="
	if !hasPrefix(s, i, p) {
		return 0, 0
	}
	j := i + len(p)
	isB64 := func(c byte) bool { return isAlnum(c) || c == '+' || c == '/' }
	if countRun(s, j, 86, isB64) != 86 || !hasPrefix(s, j+86, "==") {
		return 0, 0
	}
	return j, j + 88
}

// matchGitHub matches GitHub tokens: ghp_, gho_, ghs_, ghu_ or ghr_ and at
// least 36 alphanumerics, or github_pat_ and at least 22 of [A-Za-z0-9_].
func matchGitHub(s []byte, i int) int {
	if hasPrefix(s, i, "github_pat_") {
		n := countRun(s, i+11, 255, isWord)
		if n < 22 || n > 255 {
			return 0
		}
		return i + 11 + n
	}
	if len(s)-i < 4 || s[i+1] != 'h' || s[i+3] != '_' {
		return 0
	}
	switch s[i+2] {
	case 'p', 'o', 's', 'u', 'r':
	default:
		return 0
	}
	n := countRun(s, i+4, 255, isAlnum)
	if n < 36 || n > 255 || (i+4+n < len(s) && s[i+4+n] == '_') {
		return 0
	}
	return i + 4 + n
}

// matchSlack matches Slack tokens: xoxa-, xoxb-, xoxp-, xoxr- or xoxs- and
// at least 10 of [A-Za-z0-9-].
func matchSlack(s []byte, i int) int {
	if len(s)-i < 5 || !hasPrefix(s, i, "xox") || s[i+4] != '-' || bytes.IndexByte([]byte("abprs"), s[i+3]) < 0 {
		return 0
	}
	isTok := func(c byte) bool { return isAlnum(c) || c == '-' }
	n := countRun(s, i+5, 255, isTok)
	if n < 10 || n > 255 {
		return 0
	}
	return i + 5 + n
}

// matchStripe matches Stripe live secret and restricted keys: sk_live_ or
// rk_live_ and at least 16 alphanumerics.
func matchStripe(s []byte, i int) int {
	if !hasPrefix(s, i+1, "k_live_") {
		return 0
	}
	n := countRun(s, i+8, 255, isAlnum)
	if n < 16 || n > 255 || (i+8+n < len(s) && s[i+8+n] == '_') {
		return 0
	}
	return i + 8 + n
}

// maxPEM bounds the search for the end of a private key block.
const maxPEM = 32 << 10

// matchPrivateKey matches a PEM private key block from "-----BEGIN ...
// PRIVATE KEY-----" to its END line. Without an END line within 32KiB it
// matches the header line and the base64 (and header) lines that follow.
func matchPrivateKey(s []byte, i int) int {
	if !hasPrefix(s, i, "-----BEGIN ") {
		return 0
	}
	j := i + 11
	k := j
	for k < len(s) && k-j < 40 && (isUpper(s[k]) || isDigit(s[k]) || s[k] == ' ') {
		k++
	}
	if !hasPrefix(s, k, "-----") || !bytes.HasSuffix(s[j:k], []byte("PRIVATE KEY")) {
		return 0
	}
	body := k + 5
	window := s[body:min(len(s), body+maxPEM)]
	if e := bytes.Index(window, []byte("-----END ")); e >= 0 {
		rest := window[e+9:]
		if f := bytes.Index(rest[:min(len(rest), 50)], []byte("PRIVATE KEY-----")); f >= 0 {
			return body + e + 9 + f + len("PRIVATE KEY-----")
		}
	}
	e := body
	for e < len(s) && e-body < maxPEM {
		c := s[e]
		if !(isAlnum(c) || c == '+' || c == '/' || c == '=' || c == '\n' || c == '\r' || c == ' ' || c == '\t' || c == ':' || c == ',' || c == '-') {
			break
		}
		e++
	}
	return e
}
