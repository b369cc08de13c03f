package agentproto_test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/task"
)

// TestClientReusesConnections: a host's tasks report at once; the client
// keeps its connections to the replica for the next round instead of
// opening new ones (with net/http's default of two idle connections per
// host, 20 rounds of 16 concurrent reports opened 255 connections).
func TestClientReusesConnections(t *testing.T) {
	var opened atomic.Int64
	r := newReplicaWith(t, 0, nil, func(srv *http.Server) {
		srv.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				opened.Add(1)
			}
		}
	})
	c, err := agentproto.NewClient(r.srv.URL, auth.Key{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}, "")
	if err != nil {
		t.Fatal(err)
	}
	const rounds, concurrent = 20, 16
	for range rounds {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.ReportStatus(context.Background(), "h1", agentproto.StatusUpdate{TaskID: "t1", LastStatus: task.StatusRunning}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	// net/http gives a connection back to the pool just after its
	// answer is read, so a call of the next round may start in that moment
	// and open one more: allow twice the calls of a round (without reuse
	// it was ten times more).
	if n := opened.Load(); n > 2*concurrent {
		t.Errorf("%d rounds of %d concurrent calls opened %d connections; want at most %d", rounds, concurrent, n, 2*concurrent)
	}
}
