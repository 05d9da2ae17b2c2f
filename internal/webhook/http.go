package webhook

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kycbatch/kycbatch/internal/apperr"
	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/web"
)

// ErrEndpointNotFound answers unknown endpoints, other businesses' endpoints and ids that are not UUIDs alike.
var ErrEndpointNotFound = apperr.New(apperr.NotFound, "0703020100", "webhook endpoint not found").WithParameter("id")

func invalid(parameter, message string) *apperr.Error {
	return apperr.New(apperr.Invalid, "0703010200", message).WithParameter(parameter)
}

// maxBodyBytes bounds a create request.
const maxBodyBytes = 64 << 10

// maxEndpoints bounds the endpoints of one business.
const maxEndpoints = 20

// deliveriesLimit is how many attempts the deliveries listing shows.
const deliveriesLimit = 100

// Handler serves the webhook endpoint API.
type Handler struct {
	store        *Store
	allowPrivate bool
	logger       *slog.Logger
}

// NewHandler returns a Handler; allowPrivate accepts URLs of loopback and
// private addresses (development and tests only).
func NewHandler(store *Store, allowPrivate bool, logger *slog.Logger) *Handler {
	return &Handler{store: store, allowPrivate: allowPrivate, logger: logger}
}

// endpointView is an endpoint as the API shows it; Secret is set only in the answer to its creation.
type endpointView struct {
	ID        uuid.UUID `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Secret    string    `json:"secret,omitempty"`
	CreatedAt web.Time  `json:"createdAt"`
}

func view(e endpoint) endpointView {
	events := e.Events
	if events == nil {
		events = []string{}
	}
	return endpointView{ID: e.ID, URL: e.URL, Events: events, CreatedAt: web.Time(e.CreatedAt)}
}

// Create handles POST /webhook-endpoints.
func (h *Handler) Create(c echo.Context) error {
	var body struct {
		URL    *string   `json:"url"`
		Events *[]string `json:"events"`
	}
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, maxBodyBytes))
	if err := dec.Decode(&body); err != nil {
		return invalid("", "request body must be a JSON object")
	}
	if body.URL == nil {
		return invalid("url", "url is required")
	}
	ctx := c.Request().Context()
	if err := checkURL(ctx, strings.TrimSpace(*body.URL), h.allowPrivate); err != nil {
		return invalid("url", err.Error())
	}
	events := []string{}
	if body.Events != nil {
		for _, ev := range *body.Events {
			if !slices.Contains(eventTypes, ev) {
				return invalid("events", "events must be among "+strings.Join(eventTypes, ", ")+" (none: all of them)")
			}
			if !slices.Contains(events, ev) {
				events = append(events, ev)
			}
		}
	}
	business := auth.Business(c)
	existing, err := h.store.listEndpoints(ctx, business)
	if err != nil {
		return err
	}
	if len(existing) >= maxEndpoints {
		return invalid("", "a business may register at most 20 webhook endpoints")
	}
	e := endpoint{ID: uuid.New(), BusinessID: business, URL: strings.TrimSpace(*body.URL), Events: events, Secret: newSecret()}
	if err := h.store.createEndpoint(ctx, &e); err != nil {
		return err
	}
	h.logger.InfoContext(ctx, "webhook endpoint created", "endpoint_id", e.ID, "events", events)
	v := view(e)
	v.Secret = e.Secret
	return web.JSON(c, http.StatusCreated, v)
}

// List handles GET /webhook-endpoints.
func (h *Handler) List(c echo.Context) error {
	list, err := h.store.listEndpoints(c.Request().Context(), auth.Business(c))
	if err != nil {
		return err
	}
	out := struct {
		Endpoints []endpointView `json:"endpoints"`
	}{Endpoints: make([]endpointView, 0, len(list))}
	for _, e := range list {
		out.Endpoints = append(out.Endpoints, view(e))
	}
	return web.JSON(c, http.StatusOK, out)
}

// endpointParam parses the id path parameter; a malformed id is as unknown as a missing one.
func endpointParam(c echo.Context) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return uuid.Nil, ErrEndpointNotFound
	}
	return id, nil
}

// Delete handles DELETE /webhook-endpoints/{id}: the endpoint and its pending deliveries go.
func (h *Handler) Delete(c echo.Context) error {
	id, err := endpointParam(c)
	if err != nil {
		return err
	}
	err = h.store.deleteEndpoint(c.Request().Context(), auth.Business(c), id)
	if errors.Is(err, errEndpointNotFound) {
		return ErrEndpointNotFound
	}
	if err != nil {
		return err
	}
	h.logger.InfoContext(c.Request().Context(), "webhook endpoint deleted", "endpoint_id", id)
	return c.NoContent(http.StatusNoContent)
}

// Deliveries handles GET /webhook-endpoints/{id}/deliveries: the latest attempts, newest first.
func (h *Handler) Deliveries(c echo.Context) error {
	id, err := endpointParam(c)
	if err != nil {
		return err
	}
	list, err := h.store.attempts(c.Request().Context(), auth.Business(c), id, deliveriesLimit)
	if errors.Is(err, errEndpointNotFound) {
		return ErrEndpointNotFound
	}
	if err != nil {
		return err
	}
	if list == nil {
		list = []attemptView{}
	}
	return web.JSON(c, http.StatusOK, struct {
		Deliveries []attemptView `json:"deliveries"`
	}{list})
}
