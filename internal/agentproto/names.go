package agentproto

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"vessel.dev/vessel/internal/discovery"
)

// Names are the names of the fleet's tasks, as every host's DNS server
// answers them (discovery.Names: the clusters, and the tasks that run with
// an address: ID, cluster, service, IP, whether they serve, their ports).
type Names struct {
	discovery.Names
	// Revision identifies these names (equal names, equal revisions, on
	// every replica); pass it back to wait for the next.
	Revision int64 `json:"revision"`
	// StoreRevision is the revision of the control plane's store the names
	// reflect; pass it back so that a replica whose cache lags the one
	// that answered before first catches up.
	StoreRevision int64 `json:"storeRevision"`
}

// NameSource is what a host agent asks of the control plane for the names
// its DNS server answers. Any replica answers, from its task cache.
type NameSource interface {
	// Names returns the names of the fleet's tasks. When after equals
	// their current Revision it blocks until they change or ctx is done
	// (then it returns them unchanged and no error). seen is the
	// StoreRevision of the names the caller has (0: none).
	Names(ctx context.Context, hostID string, after, seen int64) (Names, error)
}

var _ NameSource = (*Client)(nil)

// Names implements NameSource: a long poll, moving between replicas as
// Assignments does.
func (c *Client) Names(ctx context.Context, hostID string, after, seen int64) (Names, error) {
	var out Names
	err := c.poll(ctx, http.MethodGet, fmt.Sprintf("/agent/v1/hosts/%s/names?after=%d&seen=%d&wait=%s",
		url.PathEscape(hostID), after, seen, DefaultLongPoll), nil, &out)
	return out, err
}
