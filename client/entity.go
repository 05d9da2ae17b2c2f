package client

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Entity types.
const (
	EntityIndividual = "INDIVIDUAL"
	EntityBusiness   = "BUSINESS"
)

// Entity is a person or company of the business, which batch rows import
// into Sumsub by its ExternalID.
type Entity struct {
	ID                       string    `json:"id"`
	ExternalID               string    `json:"externalId"`
	Type                     string    `json:"type"`
	BusinessID               string    `json:"businessId"`
	KYCStatus                string    `json:"kycStatus"` // NOT_STARTED, PENDING, APPROVED or REJECTED
	SumsubApplicantID        *string   `json:"sumsubApplicantId"`
	CardProcessorPublicToken *string   `json:"cardProcessorPublicToken"`
	CreatedAt                time.Time `json:"createdAt"`
	UpdatedAt                time.Time `json:"updatedAt"`
}

// CreateEntityRequest is the body of CreateEntity.
type CreateEntityRequest struct {
	// ExternalID is the caller's own UUID for the entity, unique per
	// business; CreateEntity makes a random one when it is empty.
	ExternalID string `json:"externalId"`
	// Type is EntityIndividual or EntityBusiness.
	Type string `json:"type"`
}

// CreateEntity creates an entity (POST /entity). A taken ExternalID answers
// an *Error for which IsConflict is true.
func (c *Client) CreateEntity(ctx context.Context, in CreateEntityRequest) (Entity, error) {
	if in.ExternalID == "" {
		in.ExternalID = uuid.NewString()
	}
	var e Entity
	err := c.postJSON(ctx, "/entity", in, &e)
	return e, err
}

// GetEntity reads an entity by its id or its externalId (GET /entity/{id}).
func (c *Client) GetEntity(ctx context.Context, id string) (Entity, error) {
	var e Entity
	err := c.getJSON(ctx, "/entity/"+url.PathEscape(id), &e)
	return e, err
}

// ListOptions selects a page of a list.
type ListOptions struct {
	Limit  int    // 1..1000; 0 takes the server's default (100)
	Cursor string // NextCursor of the previous page; empty for the first
}

// EntityPage is a page of entities, newest first.
type EntityPage struct {
	Entities   []Entity `json:"entities"`
	NextCursor *string  `json:"nextCursor"` // nil on the last page
}

// ListEntities reads a page of the business's entities (GET /entity).
func (c *Client) ListEntities(ctx context.Context, opts ListOptions) (EntityPage, error) {
	var p EntityPage
	err := c.getJSON(ctx, "/entity"+query("limit", limitParam(opts.Limit), "cursor", opts.Cursor), &p)
	return p, err
}

// limitParam encodes a page size, leaving 0 out.
func limitParam(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}
