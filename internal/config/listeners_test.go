package config

import (
	"strings"
	"testing"
)

func TestListenerAddresses(t *testing.T) {
	tests := []struct {
		desc  string
		addrs []string
		err   string
	}{
		{desc: "two ephemeral ports", addrs: []string{"127.0.0.1:0", "127.0.0.1:0"}},
		{desc: "same fixed port", addrs: []string{"127.0.0.1:8080", "127.0.0.1:8080"}, err: "used by another listener"},
		{desc: "IPv6", addrs: []string{"[::1]:8080"}},
		{desc: "no port", addrs: []string{"127.0.0.1"}, err: "not host:port"},
		{desc: "host name", addrs: []string{"example.com:80"}, err: "host must be an IP address"},
		{desc: "port out of range", addrs: []string{":70000"}, err: "invalid port"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			doc := "listeners:\n"
			for i, a := range tt.addrs {
				doc += "  - {name: l" + string(rune('a'+i)) + ", address: '" + a + "'}\n"
			}
			doc += "upstreams: {a: {targets: ['http://127.0.0.1:1']}}\nroutes: [{path: /x, methods: [GET], upstream: a, public: true}]\n"
			_, err := Parse("t.yaml", []byte(doc))
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("Parse: %v, want an error containing %q", err, tt.err)
			}
		})
	}
}
