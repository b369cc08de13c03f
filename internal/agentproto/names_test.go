package agentproto_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/discovery"
	"vessel.dev/vessel/internal/errdefs"
)

// TestNamesPollMovesToAnotherReplica: the names' long poll is a signed GET
// of the host's names route carrying the revisions the host has; a replica
// that fails (5xx) or is gone is left for the next, which answers.
func TestNamesPollMovesToAnotherReplica(t *testing.T) {
	want := agentproto.Names{Names: discovery.Names{Clusters: []string{"default"},
		Records: []discovery.Record{{TaskID: "t1", Cluster: "default", Service: "web", IP: netip.MustParseAddr("10.89.0.2"), Serving: true,
			Ports: []discovery.Port{{Port: 80, Name: "http", Protocol: "tcp"}}}}}, Revision: 7, StoreRevision: 42}
	var asked atomic.Value
	second := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			agentproto.WriteError(w, errdefs.PermissionDenied("unsigned"))
			return
		}
		asked.Store(r.Method + " " + r.URL.Path + "?after=" + r.URL.Query().Get("after") + "&seen=" + r.URL.Query().Get("seen"))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(want)
	}))
	defer second.Close()
	for name, first := range map[string]string{
		"5xx":     newReplica(t, http.StatusServiceUnavailable, nil).srv.URL,
		"refused": refusedURL(t),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := agentproto.NewClient(first+","+second.URL, auth.Key{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}, "")
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Names(context.Background(), "h1", 5, 40)
			if err != nil {
				t.Fatal(err)
			}
			if q := asked.Load(); q != "GET /agent/v1/hosts/h1/names?after=5&seen=40" {
				t.Errorf("the second replica was asked %v", q)
			}
			if got.Revision != 7 || got.StoreRevision != 42 || len(got.Records) != 1 || got.Records[0].IP != want.Records[0].IP ||
				got.Records[0].Ports[0] != want.Records[0].Ports[0] || !got.Records[0].Serving {
				t.Errorf("names: %+v, want %+v", got, want)
			}
			if c.Endpoint() != second.URL {
				t.Errorf("the replica in use is %s, want %s", c.Endpoint(), second.URL)
			}
		})
	}
}
