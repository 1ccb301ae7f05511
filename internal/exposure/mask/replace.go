package mask

// apply appends s to dst with every match replaced by its masked form.
// Matches whose action is not mask are copied unchanged.
func (m *Masker) apply(dst, s []byte, matches []match) []byte {
	prev := 0
	for _, mt := range matches {
		if m.action[mt.det] != ActionMask {
			continue
		}
		dst = append(dst, s[prev:mt.start]...)
		dst = m.replacement(dst, mt.det, s[mt.start:mt.end])
		prev = mt.end
	}
	return append(dst, s[prev:]...)
}

// replacement appends the masked form of v, a match of detector d.
// Secrets, and everything with style full, become [REDACTED:<detector>];
// partial masking keeps the last 4 digits of cards and SSNs, the country and
// last 4 characters of IBANs, the last 2 digits of phone numbers, and the
// first character and domain of e-mail addresses. Separators are kept.
func (m *Masker) replacement(dst []byte, d detID, v []byte) []byte {
	if m.full || detectors[d].secret {
		dst = append(dst, "[REDACTED:"...)
		dst = append(dst, detectors[d].name...)
		return append(dst, ']')
	}
	switch d {
	case detCard, detSSN:
		return keepLast(dst, v, 4, isDigit)
	case detPhone:
		return keepLast(dst, v, 2, isDigit)
	case detIBAN:
		dst = append(dst, v[:2]...)
		return keepLast(dst, v[2:], 4, isAlnum)
	case detEmail:
		at := len(v) - 1
		for v[at] != '@' {
			at--
		}
		dst = append(dst, v[0])
		dst = append(dst, "***"...)
		return append(dst, v[at:]...)
	}
	panic("mask: no partial style for " + detectors[d].name)
}

// keepLast appends v with every character of class but the last keep
// replaced by '*'; other characters (separators) are kept.
func keepLast(dst, v []byte, keep int, class func(byte) bool) []byte {
	total := 0
	for _, c := range v {
		if class(c) {
			total++
		}
	}
	seen := 0
	for _, c := range v {
		if class(c) {
			seen++
			if seen <= total-keep {
				c = '*'
			}
		}
		dst = append(dst, c)
	}
	return dst
}
