package httpapi

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/contract"
	"github.com/kycbatch/kycbatch/internal/webhook"
)

// endpointHandler serves the webhook endpoint API.
type endpointHandler struct {
	endpoints *webhook.Endpoints
}

// create handles POST /webhook-endpoints.
func (h endpointHandler) create(c echo.Context) error {
	var body struct {
		URL    *string  `json:"url"`
		Events []string `json:"events"`
	}
	if err := json.NewDecoder(io.LimitReader(c.Request().Body, maxJSONBody)).Decode(&body); err != nil {
		return newProblem(http.StatusBadRequest, "0703010200", "request body must be a JSON object", "")
	}
	if body.URL == nil {
		return newProblem(http.StatusBadRequest, "0703010200", "url is required", "url")
	}
	e, err := h.endpoints.Create(c.Request().Context(), *body.URL, body.Events)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusCreated, contract.EndpointOf(e))
}

// list handles GET /webhook-endpoints.
func (h endpointHandler) list(c echo.Context) error {
	list, err := h.endpoints.List(c.Request().Context())
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, contract.EndpointsOf(list))
}

// endpointParam parses the id path parameter; a malformed id is as unknown as a missing one.
func endpointParam(c echo.Context) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return uuid.Nil, webhook.ErrNotFound
	}
	return id, nil
}

// remove handles DELETE /webhook-endpoints/{id}: the endpoint and its pending deliveries go.
func (h endpointHandler) remove(c echo.Context) error {
	id, err := endpointParam(c)
	if err != nil {
		return err
	}
	if err := h.endpoints.Delete(c.Request().Context(), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// deliveries handles GET /webhook-endpoints/{id}/deliveries: the latest attempts, newest first.
func (h endpointHandler) deliveries(c echo.Context) error {
	id, err := endpointParam(c)
	if err != nil {
		return err
	}
	list, err := h.endpoints.Attempts(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, contract.DeliveriesOf(list))
}
