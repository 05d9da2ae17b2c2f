package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/contract"
	"github.com/kycbatch/kycbatch/internal/entity"
)

// maxJSONBody bounds a JSON request body; a real one is under 1 kB.
const maxJSONBody = 64 << 10

// entityHandler serves the entity endpoints.
type entityHandler struct {
	store *entity.Store
}

func invalidEntity(parameter, message string) *problem {
	return newProblem(http.StatusBadRequest, "0702010200", message, parameter)
}

// create handles POST /entity.
func (h entityHandler) create(c echo.Context) error {
	var body struct {
		ExternalID *string `json:"externalId"`
		Type       *string `json:"type"`
	}
	if err := json.NewDecoder(io.LimitReader(c.Request().Body, maxJSONBody)).Decode(&body); err != nil {
		return invalidEntity("", "request body must be a JSON object")
	}
	if body.ExternalID == nil || *body.ExternalID == "" {
		return invalidEntity("externalId", "externalId is required")
	}
	externalID, err := uuid.Parse(*body.ExternalID)
	if err != nil || len(*body.ExternalID) != 36 {
		return invalidEntity("externalId", "externalId must be a UUID")
	}
	if body.Type == nil || *body.Type == "" {
		return invalidEntity("type", "type is required")
	}
	e, err := h.store.Create(c.Request().Context(), externalID, *body.Type)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusCreated, contract.EntityOf(e))
}

// get handles GET /entity/{entityId}: by id or by external id; a reference
// that is not a UUID is as unknown as a missing one.
func (h entityHandler) get(c echo.Context) error {
	ref, err := uuid.Parse(c.Param("entityId"))
	if err != nil {
		return entity.ErrNotFound
	}
	e, err := h.store.Get(c.Request().Context(), ref)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, contract.EntityOf(e))
}

// list handles GET /entity.
func (h entityHandler) list(c echo.Context) error {
	limit := 100
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return invalidEntity("limit", "limit must be between 1 and 1000")
		}
		limit = n
	}
	list, next, err := h.store.List(c.Request().Context(), limit, c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, contract.EntityPageOf(list, next))
}
