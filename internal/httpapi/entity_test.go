package httpapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kycbatch/kycbatch/internal/testing/apitest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
)

func TestCreateAndGetEntity(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, business := e.Business(t)
	ext := uuid.New()

	r := e.Call(t, http.MethodPost, "/entity", key, map[string]string{"externalId": ext.String(), "type": "BUSINESS"})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	created := r.JSON(t)
	for field, want := range map[string]any{
		"externalId": ext.String(), "type": "BUSINESS", "businessId": business.String(),
		"kycStatus": "NOT_STARTED", "sumsubApplicantId": nil, "cardProcessorPublicToken": nil,
	} {
		if diff := cmp.Diff(want, created[field]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", field, diff)
		}
	}
	var keys []string
	for k := range created {
		keys = append(keys, k)
	}
	wantKeys := []string{"businessId", "cardProcessorPublicToken", "createdAt", "externalId", "id", "kycStatus", "sumsubApplicantId", "type", "updatedAt"}
	if diff := cmp.Diff(wantKeys, keys, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	if ts := created["createdAt"].(string); len(ts) != len("2025-10-08T11:40:20.796Z") || ts[len(ts)-1] != 'Z' {
		t.Errorf("createdAt %q is not RFC 3339 UTC with milliseconds", ts)
	}

	for _, ref := range []string{created["id"].(string), ext.String()} {
		got := e.Call(t, http.MethodGet, "/entity/"+ref, key, nil)
		if got.Status != http.StatusOK {
			t.Fatalf("get %s: %d %s", ref, got.Status, got.Body)
		}
		if diff := cmp.Diff(string(r.Body), string(got.Body)); diff != "" {
			t.Errorf("get %s (-created +got):\n%s", ref, diff)
		}
	}

	dup := e.Call(t, http.MethodPost, "/entity", key, map[string]string{"externalId": ext.String(), "type": "INDIVIDUAL"})
	want := `{"code":"0702010300","message":"entity with this externalId already exists","parameter":"externalId"}`
	if dup.Status != http.StatusConflict || string(dup.Body) != want {
		t.Errorf("duplicate: %d %s, want 409 %s", dup.Status, dup.Body, want)
	}

	// Another business has its own namespace of external ids, and sees none of ours.
	other, _ := e.Business(t)
	if r := e.Call(t, http.MethodPost, "/entity", other, map[string]string{"externalId": ext.String(), "type": "INDIVIDUAL"}); r.Status != http.StatusCreated {
		t.Errorf("same externalId in another business: %d %s", r.Status, r.Body)
	}
	notFound := `{"code":"0702020100","message":"entity not found","parameter":"entityId"}`
	for _, ref := range []string{created["id"].(string), uuid.NewString(), "not-a-uuid"} {
		got := e.Call(t, http.MethodGet, "/entity/"+ref, other, nil)
		if got.Status != http.StatusNotFound || string(got.Body) != notFound {
			t.Errorf("other business GET /entity/%s: %d %s, want 404 %s", ref, got.Status, got.Body, notFound)
		}
	}
	if got := e.Call(t, http.MethodGet, "/entity/"+ext.String(), other, nil); got.JSON(t)["id"] == created["id"] {
		t.Errorf("other business reading externalId %s got our entity", ext)
	}
}

func TestCreateEntityInvalid(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, business := e.Business(t)
	tests := []struct {
		name, body, wantParam, wantMessage string
	}{
		{"not JSON", `{`, "", "request body must be a JSON object"},
		{"array", `[]`, "", "request body must be a JSON object"},
		{"no externalId", `{"type":"INDIVIDUAL"}`, "externalId", "externalId is required"},
		{"externalId not a UUID", `{"externalId":"abc","type":"INDIVIDUAL"}`, "externalId", "externalId must be a UUID"},
		{"externalId a number", `{"externalId":5,"type":"INDIVIDUAL"}`, "", "request body must be a JSON object"},
		{"no type", `{"externalId":"` + uuid.NewString() + `"}`, "type", "type is required"},
		{"bad type", `{"externalId":"` + uuid.NewString() + `","type":"PERSON"}`, "type", "type must be INDIVIDUAL or BUSINESS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.URL+"/entity", strings.NewReader(tt.body))
			req.Header.Set("X-API-Key", key)
			r := e.Do(t, req)
			want := `{"code":"0702010200","message":"` + tt.wantMessage + `","parameter":"` + tt.wantParam + `"}`
			if r.Status != http.StatusBadRequest || string(r.Body) != want {
				t.Errorf("got %d %s\nwant 400 %s", r.Status, r.Body, want)
			}
		})
	}
	var n int
	if err := e.Pool.QueryRow(t.Context(), "SELECT count(*) FROM entities WHERE business_id = $1", business).Scan(&n); err != nil || n != 0 {
		t.Errorf("entities stored by invalid requests: %d (%v)", n, err)
	}
}

func TestListEntitiesPages(t *testing.T) {
	t.Parallel()
	e := apitest.New(t, apitest.Options{})
	key, _ := e.Business(t)
	ids := e.Entities(t, key, 5)
	other, _ := e.Business(t)
	e.Entities(t, other, 2)

	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r := e.Call(t, http.MethodGet, "/entity?limit=2&cursor="+url.QueryEscape(cursor), key, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		page := r.JSON(t)
		for _, ent := range page["entities"].([]any) {
			got = append(got, ent.(map[string]any)["externalId"].(string))
		}
		next, ok := page["nextCursor"].(string)
		if !ok {
			break
		}
		cursor = next
	}
	var want []string // newest first
	for i := len(ids) - 1; i >= 0; i-- {
		want = append(want, ids[i].String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listed external ids (-want +got):\n%s", diff)
	}

	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "cursor=%21%21"} {
		r := e.Call(t, http.MethodGet, "/entity?"+q, key, nil)
		if r.Status != http.StatusBadRequest || r.JSON(t)["code"] != "0702010200" {
			t.Errorf("GET /entity?%s: %d %s", q, r.Status, r.Body)
		}
	}
}
