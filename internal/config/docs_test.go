package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestFieldsDocumented checks that every configuration field appears in
// docs/configuration.md.
func TestFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, path string)
	var missing []string
	var walkInline func(t reflect.Type, path string)
	walk = func(ty reflect.Type, path string) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] || ty.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
			return
		}
		seen[ty] = true
		for i := 0; i < ty.NumField(); i++ {
			f := ty.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if f.Anonymous && opts == "inline" {
				walkInline(f.Type, path)
				continue
			}
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			if !strings.Contains(string(doc), "`"+name+"`") && !strings.Contains(string(doc), "."+name+"`") {
				missing = append(missing, path+name)
			}
			if _, isText := reflect.New(f.Type).Interface().(interface{ UnmarshalText([]byte) error }); !isText {
				walk(f.Type, path+name+".")
			}
		}
	}
	walkInline = func(t reflect.Type, path string) {
		delete(seen, t)
		walk(t, path)
	}
	walk(reflect.TypeFor[Config](), "")
	for _, m := range missing {
		t.Errorf("field %s is not documented in docs/configuration.md", m)
	}
}
