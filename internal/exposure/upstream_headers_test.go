package exposure

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

func TestNewUpstreamHeaders(t *testing.T) {
	tests := []struct {
		desc    string
		cfg     *config.UpstreamHeaders
		wantNil bool
		wantErr []string
	}{
		{desc: "nil block, no stage", wantNil: true},
		{desc: "names and prefixes", cfg: &config.UpstreamHeaders{Remove: []string{"X-Backend", "X-Internal-*"}}},
		{desc: "empty list", cfg: &config.UpstreamHeaders{}, wantErr: []string{"names no header"}},
		{desc: "lone star", cfg: &config.UpstreamHeaders{Remove: []string{"*"}}, wantErr: []string{"remove[0]"}},
		{desc: "every bad entry named", cfg: &config.UpstreamHeaders{Remove: []string{"ok", "a b", "X-*-Y"}}, wantErr: []string{"remove[1]", "remove[2]"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			u, err := NewUpstreamHeaders(tt.cfg)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (u == nil) != tt.wantNil {
				t.Fatalf("stage = %v", u)
			}
		})
	}
}

func TestUpstreamHeadersProcessResponse(t *testing.T) {
	u, err := NewUpstreamHeaders(&config.UpstreamHeaders{Remove: []string{"x-backend", "X-Internal-*", "X-Cache-Node"}})
	if err != nil {
		t.Fatal(err)
	}
	res := &http.Response{Header: http.Header{
		"X-Backend":        {"app-2"},
		"X-Internal-Shard": {"eu-3"},
		"X-Internal-Trace": {"t"},
		"X-Internalized":   {"keep: not the prefix X-Internal-"},
		"X-Cache-Node":     {"n1"},
		"Content-Type":     {"application/json"},
		"Via":              {"1.1 cdn"},
	}}
	if err := u.ProcessResponse(context.Background(), &gateway.Exchange{}, res); err != nil {
		t.Fatal(err)
	}
	want := []string{"Content-Type", "Via", "X-Internalized"}
	if len(res.Header) != len(want) {
		t.Errorf("headers = %v, want only %v", res.Header, want)
	}
	for _, h := range want {
		if _, ok := res.Header[h]; !ok {
			t.Errorf("%s removed", h)
		}
	}
	// Responses without headers are fine.
	if err := u.ProcessResponse(context.Background(), nil, &http.Response{}); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkLeakyHeaderRemoval(b *testing.B) {
	sh, err := NewHeaders(config.SecurityHeaders{})
	if err != nil {
		b.Fatal(err)
	}
	uh, err := NewUpstreamHeaders(&config.UpstreamHeaders{Remove: []string{"X-Internal-*"}})
	if err != nil {
		b.Fatal(err)
	}
	base := http.Header{
		"Server": {"nginx"}, "X-Powered-By": {"PHP"}, "X-Debug-Token": {"a"}, "X-Internal-Shard": {"3"},
		"Content-Type": {"application/json"}, "Content-Length": {"12"}, "Date": {"x"}, "Etag": {`"1"`},
	}
	ctx := context.Background()
	ex := &gateway.Exchange{}
	for _, c := range []struct {
		name string
		st   gateway.ResponseStage
	}{{"security_headers defaults", sh}, {"upstream_headers prefix", uh}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			res := &http.Response{}
			for b.Loop() {
				res.Header = base.Clone()
				_ = c.st.ProcessResponse(ctx, ex, res)
			}
		})
	}
}
