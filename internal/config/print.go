package config

import "github.com/goccy/go-yaml"

// Effective returns the configuration as YAML with every default filled in,
// as the gateway runs it. It holds no secrets today; when secret-bearing
// fields arrive they are redacted here.
func (c *Config) Effective() ([]byte, error) {
	return yaml.MarshalWithOptions(c, yaml.IndentSequence(true))
}
