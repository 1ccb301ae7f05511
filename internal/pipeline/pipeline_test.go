package pipeline

import (
	"errors"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
)

const base = `
listeners: [{address: '127.0.0.1:0'}]
upstreams: {a: {targets: ['http://127.0.0.1:1']}}
`

// TestBuildProblems checks that what only a stage constructor can judge is
// reported like any other configuration problem: with the field's position.
func TestBuildProblems(t *testing.T) {
	tests := []struct {
		desc string
		doc  string
		want []string // substrings of the problems, in order
	}{
		{desc: "valid", doc: base + "routes: [{path: /x, methods: [GET], upstream: a, public: true}]\n"},
		{
			desc: "any origin with credentials",
			doc: base + "cors: {allow_origins: ['*'], allow_credentials: true}\n" +
				"routes: [{path: /x, methods: [GET], upstream: a, public: true}]\n",
			want: []string{"t.yaml:4:1: cors:"},
		},
		{
			desc: "bad route origin pattern",
			doc:  base + "routes:\n  - path: /x\n    methods: [GET]\n    upstream: a\n    public: true\n    cors: {allow_origins: ['https://*.com/path']}\n",
			want: []string{"t.yaml:9:5: routes[0].cors:"},
		},
		{
			desc: "route conflict",
			doc:  base + "routes:\n  - {name: one, path: '/u/{id}', methods: [GET], upstream: a, public: true}\n  - {name: two, path: '/u/{uid}', methods: [GET], upstream: a, public: true}\n",
			want: []string{"routes[1]:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			cfg, err := config.Parse("t.yaml", []byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			gw, err := Build(cfg, nil)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				gw.Close(0)
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Build = %v, want *config.Error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%v", w, err)
				}
			}
		})
	}
}
