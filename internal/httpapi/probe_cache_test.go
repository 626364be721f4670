package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
)

// /readyz and /healthcheck describe this instant: no cache (a proxy's, a client's) may
// answer for them later, ready or not.
func TestProbeAnswersAreNotCached(t *testing.T) {
	a := httpapi.New(newDecider(t, decide.Options{}), quiet(), nil)
	url := serveAPI(t, a)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Cache-Control")
	}
	for _, stopping := range []bool{false, true} {
		if stopping {
			a.Shutdown()
		}
		for _, path := range []string{"/readyz", "/healthcheck"} {
			if code, cc := get(path); cc != "no-store" {
				t.Errorf("%s (shutting down: %v): %d with Cache-Control %q, want no-store", path, stopping, code, cc)
			}
		}
	}
}
