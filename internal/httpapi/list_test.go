package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// TestListBatches: a business's batches newest first, a page at a time, by
// status and by idempotency key (a client that lost its 201 finds its
// batch); never another business's; bad parameters answer 400.
func TestListBatches(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	other, _ := e.Business(t)
	ids := e.Entities(t, key, 3)
	var made []string
	for i := range 3 {
		r := e.Upload(t, key, fmt.Sprintf("lost-%d", i), apitest.CSVFile("", ids[i:i+1]))
		made = append(made, r.JSON(t)["batchId"].(string))
	}
	e.Upload(t, other, "lost-0", apitest.CSVFile("", e.Entities(t, other, 1)))
	e.Call(t, http.MethodPost, "/entity/kyc/import/batch/"+made[1]+"/cancel", key, nil)

	page := func(query string) (ids []string, next any) {
		r := e.Call(t, http.MethodGet, "/entity/kyc/import/batch"+query, key, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("list %s: %d %s", query, r.Status, r.Body)
		}
		body := r.JSON(t)
		for _, b := range body["batches"].([]any) {
			ids = append(ids, b.(map[string]any)["batchId"].(string))
		}
		return ids, body["nextCursor"]
	}
	first, next := page("?limit=2")
	if len(first) != 2 || first[0] != made[2] || first[1] != made[1] || next == nil {
		t.Fatalf("first page %v (next %v), want %v then a cursor", first, next, []string{made[2], made[1]})
	}
	rest, last := page("?limit=2&cursor=" + url.QueryEscape(next.(string)))
	if len(rest) != 1 || rest[0] != made[0] || last != nil {
		t.Errorf("second page %v (next %v), want [%s] and no cursor", rest, last, made[0])
	}
	if got, _ := page("?idempotencyKey=lost-0"); len(got) != 1 || got[0] != made[0] {
		t.Errorf("by idempotency key: %v, want [%s] (not the other business's)", got, made[0])
	}
	if got, _ := page("?status=cancelled"); len(got) != 1 || got[0] != made[1] {
		t.Errorf("cancelled: %v, want [%s]", got, made[1])
	}
	for query, parameter := range map[string]string{"?status=done": "status", "?limit=101": "limit", "?cursor=nope": "cursor", "?limit=0": "limit"} {
		r := e.Call(t, http.MethodGet, "/entity/kyc/import/batch"+query, key, nil)
		if r.Status != http.StatusBadRequest || r.JSON(t)["code"] != "0701020200" || r.JSON(t)["parameter"] != parameter {
			t.Errorf("list %s: %d %s, want 400 0701020200 naming %s", query, r.Status, r.Body, parameter)
		}
	}
}
