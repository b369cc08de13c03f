package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/gvisor"
	"vessel.dev/vessel/internal/runtime/microvm"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
)

// echoServer is a task's script: on port 8080, for each connection, it
// reads everything the client sends until the client's end of input (its
// half-close), then answers "got N bytes" and the bytes back, and closes.
// An answer that comes at all shows the half-close reached the task while
// the way back stayed open.
const echoServer = `exec nc -ll -p 8080 -e sh -c 'cat >/tmp/in.$$; echo "got $(wc -c </tmp/in.$$) bytes"; cat /tmp/in.$$; rm /tmp/in.$$'`

// TestPortForwardRelay: the agent's port-forward endpoint, behind the
// SigV4 verifier that admits the host's own key only (as `vessel agent
// --listen` serves it), connects to a task's own port on this host and
// splices both ways, for a task on each runtime: 1 MiB goes to the task,
// the client half-closes, and the task's answer (which it sends only after
// that) comes back whole. A task the host does not run, a stopped task, a
// port nothing listens on, a bad port and unsigned or wrongly signed
// requests are refused with their errors before anything is connected.
func TestPortForwardRelay(t *testing.T) {
	for _, name := range []string{"runc", "gvisor", "microvm"} {
		t.Run(name, func(t *testing.T) {
			needRunc(t)
			var rt runtime.Runtime
			switch name {
			case "gvisor":
				rt = newGVisor(t)
			case "microvm":
				rt = newMicroVM(t)
			}
			e := newEnvWith(t, time.Second, func(cfg *agent.Config) {
				if rt != nil {
					cfg.Runtimes[name] = rt
					cfg.Host.Runtimes = append(cfg.Host.Runtimes, name)
				}
			})
			testPortForwardRelay(t, e, name)
		})
	}
}

func testPortForwardRelay(t *testing.T, e *env, rtName string) {
	key := auth.Key{AccessKeyID: "AKIDHOSTH1", SecretAccessKey: "host-h1-secret", Policy: auth.PolicyHost, HostID: "h1"}
	verify, err := auth.NewVerifier(auth.VerifierConfig{Keys: []auth.Key{key}})
	if err != nil {
		t.Fatal(err)
	}
	// As `vessel agent` answers a refused signature.
	srv := httptest.NewServer(verify.Middleware(e.a.Handler(), func(w http.ResponseWriter, _ *http.Request, ae *auth.AuthError) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ae.HTTPStatus)
		json.NewEncoder(w).Encode(map[string]string{"kind": ae.Code, "message": ae.Message})
	}))
	defer srv.Close()
	endpoint := func(id string) string { return srv.URL + "/agent/v1/portforward/" + id }
	client := &agentproto.ExecClient{Key: key}

	id := e.runOn(rtName, echoServer)
	running := e.waitFor(id, 180*time.Second, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning })
	if running.Runtime != rtName {
		t.Fatalf("task %s runs on %q, want %q", id, running.Runtime, rtName)
	}
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Bytes both ways, the answer after the client's half-close. nc
	// listens a moment after the task runs: retried while refused.
	sent := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	var got []byte
	testutil.Eventually(t, 30*time.Second, func() error {
		conn, err := client.PortForward(c, endpoint(id), 8080)
		if err != nil {
			return err
		}
		defer conn.Close()
		writeErr := make(chan error, 1)
		go func() {
			_, err := conn.Write(sent)
			if err == nil {
				err = conn.CloseWrite()
			}
			writeErr <- err
		}()
		got, err = io.ReadAll(conn)
		if err != nil {
			return fmt.Errorf("reading the answer: %w", err)
		}
		if err := <-writeErr; err != nil {
			return fmt.Errorf("sending: %w", err)
		}
		return nil
	})
	want := append([]byte(fmt.Sprintf("got %d bytes\n", len(sent))), sent...)
	if !bytes.Equal(got, want) {
		t.Fatalf("through the port-forward to task %s (%s, %s): %d bytes beginning %q, want %d beginning %q",
			id, rtName, running.IP, len(got), head(got), len(want), head(want))
	}

	// What is refused, with its kind and a message that says why.
	for name, tc := range map[string]struct {
		id   string
		port int
		is   func(error) bool
		says string
	}{
		"a task the host does not run": {"0123456789abcdef0123456789abcdef", 8080, errdefs.IsNotFound, "does not run on host h1"},
		"a port nothing listens on":    {id, 8081, errdefs.IsUnavailable, "nothing accepts connections on port 8081"},
	} {
		if conn, err := client.PortForward(c, endpoint(tc.id), tc.port); !tc.is(err) || !strings.Contains(err.Error(), tc.says) {
			if conn != nil {
				conn.Close()
			}
			t.Errorf("port-forward to %s: %v, want an error of the right kind saying %q", name, err, tc.says)
		}
	}
	for _, q := range []string{"", "port=0", "port=65536", "port=http"} {
		resp := post(t, srv.URL+"/agent/v1/portforward/"+id+"?"+q, key)
		if resp.StatusCode != http.StatusBadRequest || resp.Kind != "InvalidArgument" || !strings.Contains(resp.Message, "from 1 to 65535") {
			t.Errorf("port-forward with query %q: %d %s %q, want 400 InvalidArgument naming the ports accepted", q, resp.StatusCode, resp.Kind, resp.Message)
		}
	}
	// Unsigned, signed with another key, and with the host's key ID but
	// another secret: refused by the verifier, nothing connected.
	plain, err := http.Post(endpoint(id)+"?port=8080", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	plain.Body.Close()
	if plain.StatusCode != http.StatusBadRequest {
		t.Errorf("an unsigned port-forward: HTTP %d, want 400 (no credentials)", plain.StatusCode)
	}
	for name, tc := range map[string]struct {
		key  auth.Key
		says string
	}{
		"another key":    {auth.Key{AccessKeyID: "AKIDOTHER", SecretAccessKey: "another-secret"}, "unknown access key ID AKIDOTHER"},
		"a wrong secret": {auth.Key{AccessKeyID: key.AccessKeyID, SecretAccessKey: "not-the-secret"}, "signature"},
	} {
		other := &agentproto.ExecClient{Key: tc.key}
		if conn, err := other.PortForward(c, endpoint(id), 8080); err == nil || !strings.Contains(err.Error(), tc.says) {
			if conn != nil {
				conn.Close()
			}
			t.Errorf("a port-forward signed with %s: %v, want it refused saying %q", name, err, tc.says)
		}
	}

	// A stopped task is refused: the host runs it no more.
	e.cp.stop(id)
	e.waitFor(id, 60*time.Second, "STOPPED", func(t *task.Task) bool { return t.Stopped() })
	testutil.Eventually(t, 10*time.Second, func() error {
		conn, err := client.PortForward(c, endpoint(id), 8080)
		if errdefs.IsNotFound(err) && strings.Contains(err.Error(), "does not run on host h1") {
			return nil
		}
		if conn != nil {
			conn.Close()
		}
		return fmt.Errorf("port-forward to a stopped task: %v, want NotFound saying the host does not run it", err)
	})
}

// answer is an agent protocol error answer.
type answer struct {
	StatusCode    int
	Kind, Message string
}

// post sends a port-forward request signed with key to u (query and all)
// without upgrading, and returns the error answer.
func post(t *testing.T, u string, key auth.Key) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.SignRequest(context.Background(), req, key, "us-east-1", agentproto.SigningService, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	json.NewDecoder(resp.Body).Decode(&a)
	a.StatusCode = resp.StatusCode
	return a
}

func head(b []byte) []byte { return b[:min(len(b), 24)] }

// runOn places a one-container task "app" running script on the runtime
// named rtName.
func (e *env) runOn(rtName, script string) string {
	e.t.Helper()
	e.n++
	id := fmt.Sprintf("pf-%s-%d-%d", time.Now().Format("150405"), os.Getpid(), e.n)
	t := &task.Task{ID: id, ARN: "arn:aws:ecs:us-east-1:000000000000:task/default/" + id, Cluster: "default",
		CPUUnits: 256, MemoryMiB: 512, HostID: "h1", Subnet: "t", Runtime: rtName,
		LastStatus: task.StatusPending, DesiredStatus: task.StatusRunning, CreatedAt: time.Now(),
		Containers: []task.Container{{Name: "app", Image: "busybox", Essential: true,
			EntryPoint: []string{"/bin/sh", "-c", script}, StopTimeout: 2 * time.Second}}}
	e.cp.add(t)
	return id
}

// newGVisor is the gvisor runtime with the runsc the cache holds
// (scripts/build-runsc), or skips saying it is missing.
func newGVisor(t *testing.T) runtime.Runtime {
	t.Helper()
	cache := os.Getenv("VESSEL_CACHE")
	if cache == "" {
		cache = "../../.cache"
	}
	runsc, _ := filepath.Abs(filepath.Join(cache, "runsc/v0.0.0-20260905035102-160fafc42237/runsc"))
	if _, err := os.Stat(runsc); err != nil {
		t.Skipf("no runsc at %s (set VESSEL_CACHE, or run scripts/build-runsc): %v", runsc, err)
	}
	rt, err := gvisor.New(gvisor.Config{StateDir: filepath.Join(t.TempDir(), "gvisor"), RunscPath: runsc})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// newMicroVM is the microvm runtime with the cached guest kernel
// (scripts/build-guest-kernel) and a guest agent built now, or skips
// saying what is missing.
func newMicroVM(t *testing.T) runtime.Runtime {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	root, _ := filepath.Abs("../..")
	out, err := exec.Command(filepath.Join(root, "scripts", "build-guest-kernel")).Output()
	if err != nil {
		t.Skipf("no guest kernel: scripts/build-guest-kernel failed: %v", err)
	}
	kernel := ""
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "kernel="); ok {
			kernel = v
		}
	}
	guest := filepath.Join(t.TempDir(), "vessel-guest")
	build := exec.Command("go", "build", "-o", guest, "./cmd/vessel-guest")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building vessel-guest: %v: %s", err, out)
	}
	rt, err := microvm.New(microvm.Config{StateDir: filepath.Join(t.TempDir(), "microvm"), KernelPath: kernel, GuestBinary: guest})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}
