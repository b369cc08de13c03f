package agentproto_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
)

// replica answers every call with {} (or, status not 0, an error of kind
// Unavailable; hang not nil, nothing until it closes) and counts them.
type replica struct {
	srv   *httptest.Server
	calls atomic.Int64
}

func newReplica(t *testing.T, status int, hang <-chan struct{}) *replica {
	return newReplicaWith(t, status, hang, nil)
}

// newReplicaWith is newReplica whose server configure sets up before it
// starts (not after: its serving goroutines read the configuration).
func newReplicaWith(t *testing.T, status int, hang <-chan struct{}, configure func(*http.Server)) *replica {
	r := &replica{}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.calls.Add(1)
		if hang != nil {
			select {
			case <-hang:
			case <-req.Context().Done():
			}
			return
		}
		if status != 0 {
			agentproto.WriteError(w, errdefs.Unavailable("the store is unreachable"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}"))
	}))
	if configure != nil {
		configure(r.srv.Config)
	}
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

// refusedURL is the URL of a port nothing listens on any more.
func refusedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestClientMovesToAnotherReplica(t *testing.T) {
	key := auth.Key{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}
	hang := make(chan struct{})
	defer close(hang)
	tests := []struct {
		name  string
		first func(t *testing.T) (url string, calls func() int64)
	}{
		{"connection refused", func(t *testing.T) (string, func() int64) {
			return refusedURL(t), func() int64 { return 1 }
		}},
		{"5xx", func(t *testing.T) (string, func() int64) {
			r := newReplica(t, http.StatusServiceUnavailable, nil)
			return r.srv.URL, r.calls.Load
		}},
		{"no answer in time", func(t *testing.T) (string, func() int64) {
			r := newReplica(t, 0, hang)
			return r.srv.URL, r.calls.Load
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			firstURL, firstCalls := tt.first(t)
			second := newReplica(t, 0, nil)
			c, err := agentproto.NewClient(firstURL+" , "+second.srv.URL, key, "")
			if err != nil {
				t.Fatal(err)
			}
			c.WithCallTimeout(500 * time.Millisecond)
			if err := c.Heartbeat(context.Background(), "h1"); err != nil {
				t.Fatalf("heartbeat with the second replica answering: %v", err)
			}
			if firstCalls() != 1 || second.calls.Load() != 1 {
				t.Fatalf("calls: first %d, second %d; want 1 and 1", firstCalls(), second.calls.Load())
			}
			if c.Endpoint() != second.srv.URL {
				t.Fatalf("replica in use is %s, want the one that answered, %s", c.Endpoint(), second.srv.URL)
			}
			// The next call goes straight to the replica that answered.
			if err := c.Heartbeat(context.Background(), "h1"); err != nil {
				t.Fatal(err)
			}
			if firstCalls() != 1 || second.calls.Load() != 2 {
				t.Fatalf("after a second call: first %d, second %d; want 1 and 2", firstCalls(), second.calls.Load())
			}
		})
	}
}

func TestClientNoReplicaAnswers(t *testing.T) {
	c, err := agentproto.NewClient(refusedURL(t)+","+refusedURL(t), auth.Key{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}, "")
	if err != nil {
		t.Fatal(err)
	}
	err = c.Heartbeat(context.Background(), "h1")
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("got %v, want an error of kind Unavailable", err)
	}
}

func TestClientEndpointsChecked(t *testing.T) {
	key := auth.Key{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}
	for _, bad := range []string{"", ",", "http://a:1,ftp://b", "http://a:1,b:2"} {
		_, err := agentproto.NewClient(bad, key, "")
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "separated by commas") {
			t.Errorf("NewClient(%q): got %v, want an InvalidArgument error saying what is accepted", bad, err)
		}
	}
}

// TestClientCreatesOnce: a call that creates something goes to another
// replica only when it reached none; sent and unanswered, it is not sent
// again (the first may have applied it), and the next call goes elsewhere.
func TestClientCreatesOnce(t *testing.T) {
	key := auth.Key{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}
	hang := make(chan struct{})
	defer close(hang)
	create := func(c *agentproto.Client) error {
		_, err := c.CreateCredential(context.Background(), agentproto.CreateCredentialRequest{Name: "ci"})
		return err
	}
	t.Run("connection refused: sent to the next", func(t *testing.T) {
		second := newReplica(t, 0, nil)
		c, err := agentproto.NewClient(refusedURL(t)+","+second.srv.URL, key, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := create(c); err != nil || second.calls.Load() != 1 {
			t.Fatalf("create: %v, %d call(s) on the second replica; want success from it", err, second.calls.Load())
		}
	})
	for name, first := range map[string]*replica{
		"5xx":               newReplica(t, http.StatusServiceUnavailable, nil),
		"no answer in time": newReplica(t, 0, hang),
	} {
		t.Run(name+": not sent again", func(t *testing.T) {
			second := newReplica(t, 0, nil)
			c, err := agentproto.NewClient(first.srv.URL+","+second.srv.URL, key, "")
			if err != nil {
				t.Fatal(err)
			}
			c.WithCallTimeout(500 * time.Millisecond)
			if err := create(c); !errdefs.IsUnavailable(err) || second.calls.Load() != 0 {
				t.Fatalf("create: %v, %d call(s) on the second replica; want an Unavailable error and none", err, second.calls.Load())
			}
			if c.Endpoint() != second.srv.URL {
				t.Fatalf("the next call goes to %s, want %s", c.Endpoint(), second.srv.URL)
			}
		})
	}
}

// TestLongPollFollowsAMove: a long poll waiting on a replica that stopped
// answering (paused: its connection open, no answer) is abandoned as soon
// as another call leaves that replica, and asked again of the replica that
// call moved to, instead of waiting out its long-poll deadline.
func TestLongPollFollowsAMove(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	paused := newReplica(t, 0, hang)
	live := newReplica(t, 0, nil)
	c, err := agentproto.NewClient(paused.srv.URL+","+live.srv.URL, auth.Key{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}, "")
	if err != nil {
		t.Fatal(err)
	}
	c.WithCallTimeout(200 * time.Millisecond)
	polled := make(chan error, 1)
	go func() {
		_, err := c.Assignments(context.Background(), "h1", 0)
		polled <- err
	}()
	for paused.calls.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	// The heartbeat finds the paused replica silent and moves on.
	if err := c.Heartbeat(context.Background(), "h1"); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	select {
	case err := <-polled:
		if err != nil {
			t.Fatalf("the long poll after the move: %v", err)
		}
	case <-time.After(agentproto.DefaultLongPoll / 2):
		t.Fatalf("the long poll still waits on the paused replica %v after the heartbeat moved to the other", agentproto.DefaultLongPoll/2)
	}
	if live.calls.Load() != 2 {
		t.Errorf("the live replica got %d calls, want 2 (the heartbeat and the poll)", live.calls.Load())
	}
}
