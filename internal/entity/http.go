package entity

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/web"
)

// maxBodyBytes bounds a create request; a real one is under 100 bytes.
const maxBodyBytes = 64 << 10

// Handler serves the entity endpoints.
type Handler struct {
	store *Store
}

// NewHandler returns a Handler on store.
func NewHandler(store *Store) *Handler {
	return &Handler{store: store}
}

// Create handles POST /entity.
func (h *Handler) Create(c echo.Context) error {
	var body struct {
		ExternalID *string `json:"externalId"`
		Type       *string `json:"type"`
	}
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, maxBodyBytes))
	if err := dec.Decode(&body); err != nil {
		return invalid("", "request body must be a JSON object")
	}
	if body.ExternalID == nil || *body.ExternalID == "" {
		return invalid("externalId", "externalId is required")
	}
	externalID, err := uuid.Parse(*body.ExternalID)
	if err != nil || len(*body.ExternalID) != 36 {
		return invalid("externalId", "externalId must be a UUID")
	}
	if body.Type == nil || *body.Type == "" {
		return invalid("type", "type is required")
	}
	e, err := h.store.Create(c.Request().Context(), auth.Business(c), externalID, *body.Type)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusCreated, e)
}

// Get handles GET /entity/{entityId}.
func (h *Handler) Get(c echo.Context) error {
	e, err := h.store.Get(c.Request().Context(), auth.Business(c), c.Param("entityId"))
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, e)
}

// List handles GET /entity.
func (h *Handler) List(c echo.Context) error {
	limit := 100
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return invalid("limit", "limit must be between 1 and 1000")
		}
		limit = n
	}
	page, err := h.store.List(c.Request().Context(), auth.Business(c), limit, c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, page)
}
