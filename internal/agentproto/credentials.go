package agentproto

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Credential is an access key as the key management routes show it. The
// secret is set only in the answers of create and rotate.
type Credential struct {
	AccessKeyID     string    `json:"accessKeyId"`
	SecretAccessKey string    `json:"secretAccessKey,omitempty"`
	Name            string    `json:"name"`
	Policy          string    `json:"policy"`
	Allow           []string  `json:"allow,omitempty"`
	HostID          string    `json:"hostId,omitempty"`
	CreatedAt       time.Time `json:"createdAt,omitzero"`
}

// CreateCredentialRequest asks for a new key: a policy (admin, operator,
// read-only) or the actions of a custom policy.
type CreateCredentialRequest struct {
	Name   string   `json:"name"`
	Policy string   `json:"policy,omitempty"`
	Allow  []string `json:"allow,omitempty"`
}

// CredentialList is the answer of ListCredentials.
type CredentialList struct {
	Credentials []Credential `json:"credentials"`
}

// CreateCredential creates a key (POST /vessel/v1/credentials) and returns
// it with its secret.
func (c *Client) CreateCredential(ctx context.Context, in CreateCredentialRequest) (Credential, error) {
	var out Credential
	err := c.once(ctx, http.MethodPost, "/vessel/v1/credentials", in, &out)
	return out, err
}

// ListCredentials lists every key, without secrets.
func (c *Client) ListCredentials(ctx context.Context) ([]Credential, error) {
	var out CredentialList
	err := c.do(ctx, http.MethodGet, "/vessel/v1/credentials", nil, &out)
	return out.Credentials, err
}

// RotateCredential gives the key with this access key ID or name a new
// secret and returns it; the old secret stops working.
func (c *Client) RotateCredential(ctx context.Context, idOrName string) (Credential, error) {
	var out Credential
	err := c.once(ctx, http.MethodPost, "/vessel/v1/credentials/"+url.PathEscape(idOrName)+"/rotate", nil, &out)
	return out, err
}

// DeleteCredential deletes the key with this access key ID or name.
func (c *Client) DeleteCredential(ctx context.Context, idOrName string) error {
	return c.do(ctx, http.MethodDelete, "/vessel/v1/credentials/"+url.PathEscape(idOrName), nil, nil)
}
