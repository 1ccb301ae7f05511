package pipeline

import (
	"errors"
	"os"
	"path/filepath"
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
			desc: "upstream CA file that is not PEM",
			doc: "listeners: [{address: '127.0.0.1:0'}]\nupstreams:\n  a:\n    targets: ['https://127.0.0.1:1']\n    tls: {ca_file: CAFILE}\n" +
				"routes: [{path: /x, methods: [GET], upstream: a, public: true}]\n",
			want: []string{"t.yaml:3:3: upstreams.a:"},
		},
		{
			desc: "route conflict",
			doc:  base + "routes:\n  - {name: one, path: '/u/{id}', methods: [GET], upstream: a, public: true}\n  - {name: two, path: '/u/{uid}', methods: [GET], upstream: a, public: true}\n",
			want: []string{"routes[1]:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			ca := filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse("t.yaml", []byte(strings.ReplaceAll(tt.doc, "CAFILE", ca)))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			gw, err := Build(cfg, nil, nil)
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
