package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// TestMetricLabelsBounded sends 1,000 made-up methods, to a route and to
// unknown paths: the request metrics gain a handful of series, not one per
// method or path.
func TestMetricLabelsBounded(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	series := func() int {
		n := 0
		for name := range e.Scrape(t) {
			if strings.HasPrefix(name, "kycbatch_http_request") {
				n++
			}
		}
		return n
	}
	series() // the scrapes' own series
	for i := range 1000 {
		path := "/healthz"
		if i%2 == 1 {
			path = fmt.Sprintf("/no-such-path-%d", i)
		}
		req, err := http.NewRequest(fmt.Sprintf("M%d", i), e.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	before := series()
	for i := range 1000 {
		req, _ := http.NewRequest(fmt.Sprintf("X%d", i), e.URL+fmt.Sprintf("/other-%d", i), nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}
	// The first thousand made every series they could (a method "other"
	// on the route and on unmatched paths, with their statuses); the second
	// adds none.
	if after := series(); after != before || before > 100 {
		t.Errorf("request metric series: %d after 1,000 odd requests, %d after 2,000: want a bounded, unchanged count", before, after)
	}
}
