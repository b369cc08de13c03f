package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/testutil"
)

// vessel sends a signed request to one of Vessel's own routes and returns
// the status and body.
func (e *env) vessel(key auth.Key, method, path string, in any) (int, []byte) {
	e.t.Helper()
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := auth.SignRequest(context.Background(), req, key, "us-east-1", "vessel", body, time.Now()); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func (e *env) join(token, hostID string) (int, server.JoinResponse, string) {
	e.t.Helper()
	body, _ := json.Marshal(server.JoinRequest{Token: token, HostID: hostID})
	resp, err := http.Post(e.url+"/agent/v1/join", "application/json", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out server.JoinResponse
	json.Unmarshal(data, &out)
	return resp.StatusCode, out, string(data)
}

func (e *env) createToken(ttl string) server.CreatedJoinToken {
	e.t.Helper()
	code, body := e.vessel(e.key, http.MethodPost, "/vessel/v1/join-tokens", map[string]string{"ttl": ttl})
	if code != 200 {
		e.t.Fatalf("CreateJoinToken: HTTP %d: %s", code, body)
	}
	var tok server.CreatedJoinToken
	json.Unmarshal(body, &tok)
	return tok
}

// TestJoinTokens: a host joins with a token and receives a credential bound
// to its ID, which the control plane keeps across a restart of the agent;
// expired, deleted, unknown and wrong-secret tokens are refused, and so is
// a second host claiming an ID that already has a credential.
func TestJoinTokens(t *testing.T) {
	var offset atomic.Int64
	e := newEnvWith(t, envOptions{noAgent: true}, func(c *server.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	tok := e.createToken("1h")
	if !strings.HasPrefix(tok.Token, tok.ID+".") || len(tok.Token) != 23 {
		t.Fatalf("token %q is not of the form ID.SECRET", tok.Token)
	}
	// Listing shows no secret.
	_, list := e.vessel(e.key, http.MethodGet, "/vessel/v1/join-tokens", nil)
	if strings.Contains(string(list), strings.Split(tok.Token, ".")[1]) || !strings.Contains(string(list), tok.ID) {
		t.Errorf("the token list shows the secret, or not the token: %s", list)
	}

	code, cred, body := e.join(tok.Token, "host-a")
	if code != 200 || cred.AccessKeyID == "" || cred.HostID != "host-a" {
		t.Fatalf("join: HTTP %d: %s", code, body)
	}
	key := auth.Key{AccessKeyID: cred.AccessKeyID, SecretAccessKey: cred.SecretAccessKey}
	client, _ := agentproto.NewClient(e.url, key, "us-east-1")
	if err := client.RegisterHost(ctx(t), agentproto.Host{ID: "host-a", MilliCPU: 1000, MemoryMiB: 1024, Runtimes: []string{"sim"}}); err != nil {
		t.Fatalf("the joined host registering itself: %v", err)
	}
	// A host credential may not manage tokens.
	if code, body := e.vessel(key, http.MethodPost, "/vessel/v1/join-tokens", map[string]string{}); code != http.StatusForbidden {
		t.Errorf("a host credential creating a join token: HTTP %d %s, want 403", code, body)
	}

	for _, c := range []struct {
		name, token, host, want string
		status                  int
	}{
		{"claimed host ID", tok.Token, "host-a", "already has a credential", http.StatusConflict},
		{"wrong secret", tok.ID + ".0000000000000000", "host-b", "secret is wrong", http.StatusForbidden},
		{"unknown token", "abcdef.0123456789abcdef", "host-b", "unknown or was deleted", http.StatusForbidden},
		{"malformed", "nope", "host-b", "not of the form ID.SECRET", http.StatusBadRequest},
		{"bad host ID", tok.Token, "../x", "host ID", http.StatusBadRequest},
	} {
		code, _, body := e.join(c.token, c.host)
		if code != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s: HTTP %d %s; want %d and %q", c.name, code, body, c.status, c.want)
		}
	}

	// Deleted: refused.
	del := e.createToken("1h")
	if code, body := e.vessel(e.key, http.MethodDelete, "/vessel/v1/join-tokens/"+del.ID, nil); code != 200 {
		t.Fatalf("DeleteJoinToken: HTTP %d %s", code, body)
	}
	if code, _, body := e.join(del.Token, "host-c"); code != http.StatusForbidden || !strings.Contains(body, "unknown or was deleted") {
		t.Errorf("deleted token: HTTP %d %s", code, body)
	}
	// Expired: refused.
	short := e.createToken("1m")
	offset.Store(int64(2 * time.Minute))
	if code, _, body := e.join(short.Token, "host-d"); code != http.StatusForbidden || !strings.Contains(body, "expired") {
		t.Errorf("expired token: HTTP %d %s", code, body)
	}
	if code, body := e.vessel(e.key, http.MethodPost, "/vessel/v1/join-tokens", map[string]string{"ttl": "forever"}); code != 400 || !strings.Contains(string(body), "24h") {
		t.Errorf("bad TTL: HTTP %d %s", code, body)
	}
}

// TestRevokedHostIsCutOff: after `vessel host revoke`, the host's
// credential is refused as UnrecognizedClient, its tasks stop as those of
// a lost host, and not even the admin key registers it again until it
// joins anew.
func TestRevokedHostIsCutOff(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	tok := e.createToken("")
	code, cred, body := e.join(tok.Token, "host-r")
	if code != 200 {
		t.Fatalf("join: HTTP %d %s", code, body)
	}
	client, _ := agentproto.NewClient(e.url, auth.Key{AccessKeyID: cred.AccessKeyID, SecretAccessKey: cred.SecretAccessKey}, "us-east-1")
	h := agentproto.Host{ID: "host-r", MilliCPU: 2000, MemoryMiB: 4096, Runtimes: []string{"sim"}}
	if err := client.RegisterHost(ctx(t), h); err != nil {
		t.Fatal(err)
	}
	arn := e.run(e.register("revoked", "256", "512", "sleep", "60"))
	testutil.Eventually(t, 20*time.Second, func() error {
		as, err := client.Assignments(ctx(t), "host-r", -1)
		if err != nil {
			t.Fatal(err)
		}
		if len(as.Tasks) != 1 {
			return fmt.Errorf("task %s was not placed on the host", arn)
		}
		return nil
	})

	if code, body := e.vessel(e.key, http.MethodPost, "/vessel/v1/hosts/host-r/revoke", nil); code != 200 {
		t.Fatalf("RevokeHost: HTTP %d %s", code, body)
	}
	err := client.Heartbeat(ctx(t), "host-r")
	if err == nil || !strings.Contains(err.Error(), "UnrecognizedClient") && !strings.Contains(err.Error(), "unknown access key") {
		t.Errorf("heartbeat after revoke: %v, want UnrecognizedClient", err)
	}
	if st := e.waitStatus(arn, "STOPPED"); st.StopCode != "TerminationNotice" {
		t.Errorf("the revoked host's task stopped with %q, want TerminationNotice", st.StopCode)
	}
	admin, _ := agentproto.NewClient(e.url, e.key, "us-east-1")
	if err := admin.RegisterHost(ctx(t), h); !errors.Is(err, agentproto.ErrAccessDenied) {
		t.Errorf("registering the revoked host with the admin key: %v, want AccessDenied", err)
	}
	_, list := e.vessel(e.key, http.MethodGet, "/vessel/v1/hosts", nil)
	if !strings.Contains(string(list), `"revoked":true`) {
		t.Errorf("the host list does not show the revocation: %s", list)
	}
	// A new join re-admits it.
	if code, _, body := e.join(tok.Token, "host-r"); code != 200 {
		t.Fatalf("join after revoke: HTTP %d %s", code, body)
	}
	if err := admin.RegisterHost(ctx(t), h); err != nil {
		t.Errorf("registering after a new join: %v", err)
	}
}
