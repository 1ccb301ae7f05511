package router

import (
	"errors"
	"strings"
)

// Shape returns the key under which Builder.Add compares routes: two routes
// with a method in common conflict exactly when their Shapes are equal. The
// key holds the normalised host pattern and the template with parameter
// names left out ("/u/{id}" and "/u/{uid}" have the same Shape); params
// lists the template's parameter names in order. Shape returns the error
// Add returns for an invalid host pattern or template.
func Shape(host, template string) (key string, params []string, err error) {
	hp, herr := parseHostPattern(host)
	segs, terr := parseTemplate(template)
	if err := errors.Join(herr, terr); err != nil {
		return "", nil, err
	}
	var b strings.Builder
	b.WriteByte(byte('0' + hp.kind))
	b.WriteString(hp.name)
	for _, s := range segs {
		b.WriteByte('/')
		switch s.kind {
		case segParam:
			b.WriteString("{}")
			params = append(params, s.text)
		case segCatchAll:
			b.WriteString("{...}")
			params = append(params, s.text)
		default:
			b.WriteString(s.text)
		}
	}
	return b.String(), params, nil
}
