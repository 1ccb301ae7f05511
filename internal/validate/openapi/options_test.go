package openapi

import (
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
)

func TestOptionsFrom(t *testing.T) {
	report := NewShadowReport(1, nil)
	yes, no := true, false
	tests := []struct {
		desc      string
		cfg       config.OpenAPI
		generated bool
		want      Options
	}{
		{desc: "defaults on generated routes", cfg: config.OpenAPI{Spec: "a.yaml"}, generated: true, want: Options{Strict: true}},
		{desc: "defaults on a route", cfg: config.OpenAPI{Spec: "a.yaml"}, want: Options{}},
		{desc: "strict off on generated routes", cfg: config.OpenAPI{Spec: "a.yaml", Strict: &no}, generated: true, want: Options{}},
		{desc: "strict on a route", cfg: config.OpenAPI{Spec: "a.yaml", Strict: &yes}, want: Options{Strict: true}},
		{desc: "log and shadow", cfg: config.OpenAPI{Spec: "a.yaml", Mode: "log", UnknownOperations: "shadow"}, want: Options{Mode: ModeLog, Unknown: UnknownShadow}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := tc.cfg
			c.ApplyDefaults()
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			got := OptionsFrom(&c, tc.generated, report, "books")
			tc.want.Shadow, tc.want.Source = report, "books"
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	bad := func(s string) *string { return &s }
	c := config.OpenAPI{BasePath: bad("v1/"), Mode: "block", UnknownOperations: "allow"}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"openapi.spec:", "openapi.base_path: must start with /", "openapi.mode:", "openapi.unknown_operations:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	for base, want := range map[string]string{"/v1/": "must not end with /", "/{v}": "plain path", "": "", "/v1": ""} {
		c := config.OpenAPI{Spec: "a.yaml", BasePath: bad(base)}
		c.ApplyDefaults()
		err := c.Validate()
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("base_path %q: %v, want %q", base, err, want)
		}
	}
	var nilCfg *config.OpenAPI
	nilCfg.ApplyDefaults()
	if nilCfg.Validate() != nil || nilCfg.StrictDefault(true) != true {
		t.Error("a nil block")
	}
}
