package exposure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// DefaultLeakyHeaders are the upstream response headers the security-headers
// stage removes when security_headers.remove is not set: they advertise the
// upstream's software, version, host or debug state. Via is deliberately
// absent: it is a legitimate record of the proxies a message crossed.
var DefaultLeakyHeaders = []string{
	"Server", "X-Powered-By", "X-AspNet-Version", "X-AspNetMvc-Version",
	"X-Runtime", "X-Generator", "X-Backend-Server", "X-Debug-*",
}

// headerList is a compiled list of header names and name prefixes to remove.
// It is immutable and safe for concurrent use.
type headerList struct {
	exact  []string // canonical names
	prefix []string // compared case-insensitively
}

// compileHeaderList compiles entries (names, or prefixes written with a
// trailing *), returning one error per bad entry, named by its index.
func compileHeaderList(entries []string) (headerList, []error) {
	var l headerList
	var errs []error
	for i, name := range entries {
		if err := config.ValidateHeaderPattern(name); err != nil {
			errs = append(errs, fmt.Errorf("remove[%d]: %w", i, err))
			continue
		}
		name = strings.TrimSpace(name)
		if p, ok := strings.CutSuffix(name, "*"); ok {
			l.prefix = append(l.prefix, p)
		} else {
			l.exact = append(l.exact, http.CanonicalHeaderKey(name))
		}
	}
	return l, errs
}

// strip deletes every listed header from h. Exact names cost one map delete
// each; prefixes cost one pass over h.
func (l *headerList) strip(h http.Header) {
	for _, name := range l.exact {
		delete(h, name)
	}
	if len(l.prefix) == 0 {
		return
	}
	for k := range h {
		if l.matchesPrefix(k) {
			delete(h, k)
		}
	}
}

func (l *headerList) matchesPrefix(name string) bool {
	for _, p := range l.prefix {
		if len(name) >= len(p) && strings.EqualFold(name[:len(p)], p) {
			return true
		}
	}
	return false
}

// UpstreamHeaders is the per-route response stage that removes more upstream
// headers than the gateway-wide security_headers.remove list. It is built by
// NewUpstreamHeaders, immutable afterwards and safe for concurrent use.
type UpstreamHeaders struct {
	list headerList
}

// NewUpstreamHeaders builds the stage for a route's upstream_headers block.
// It returns (nil, nil) for a nil block, and an error naming every bad entry
// (see config.ValidateHeaderPattern).
func NewUpstreamHeaders(cfg *config.UpstreamHeaders) (*UpstreamHeaders, error) {
	if cfg == nil {
		return nil, nil
	}
	if len(cfg.Remove) == 0 {
		return nil, errors.New("upstream headers: remove names no header")
	}
	l, errs := compileHeaderList(cfg.Remove)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("upstream headers: %w", err)
	}
	return &UpstreamHeaders{list: l}, nil
}

// ProcessResponse removes the configured headers from res. It never
// rejects; gateway-generated responses carry none of them, and are left
// alone only because there is nothing to remove.
func (u *UpstreamHeaders) ProcessResponse(_ context.Context, _ *gateway.Exchange, res *http.Response) error {
	if res == nil || res.Header == nil {
		return nil
	}
	u.list.strip(res.Header)
	return nil
}

var _ gateway.ResponseStage = (*UpstreamHeaders)(nil)
