package admin

import (
	"context"
	"net/http"
	"sync"
)

// healthz answers 200 while the process serves HTTP: liveness only, no
// dependency is consulted (a liveness probe that fails on a Redis outage
// would restart healthy gateways).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request, _ *call) {
	s.writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// CheckResult is the outcome of one readiness check in the /readyz body.
type CheckResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// readyz answers 200 when a configuration is loaded and every readiness
// check passes within admin.readiness_timeout, 503 otherwise; the body lists
// each check. Checks run in parallel.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ *call) {
	results := make([]CheckResult, 1+len(s.deps.Ready))
	results[0] = CheckResult{Name: "config", OK: true}
	if s.deps.Config != nil {
		if body, _ := s.deps.Config(); body == nil {
			results[0] = CheckResult{Name: "config", Error: "no configuration is loaded"}
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadinessTimeout.D())
	defer cancel()
	var wg sync.WaitGroup
	for i, c := range s.deps.Ready {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := CheckResult{Name: c.Name, OK: true}
			if err := runCheck(ctx, c.Check); err != nil {
				res = CheckResult{Name: c.Name, Error: err.Error()}
			}
			results[i+1] = res
		}()
	}
	wg.Wait()
	status, word := http.StatusOK, "ready"
	for _, res := range results {
		if !res.OK {
			status, word = http.StatusServiceUnavailable, "not_ready"
		}
	}
	s.writeJSON(w, r, status, map[string]any{"status": word, "checks": results})
}

// runCheck runs f, returning ctx's error if f does not return before ctx
// ends (a check that ignores its context cannot hold /readyz past the
// timeout) and turning a panic into an error.
func runCheck(ctx context.Context, f func(context.Context) error) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- errPanic
			}
		}()
		done <- f(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type checkError string

func (e checkError) Error() string { return string(e) }

const errPanic = checkError("readiness check panicked")
