package agent

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testenv"
)

// TestHTTPProbeRedirects checks the kubelet's redirect rule: a redirect on
// the same host is followed (its target decides), one to another host is
// not (the 3xx is a success).
func TestHTTPProbeRedirects(t *testing.T) {
	testenv.SkipShort(t, "a network namespace")
	if os.Geteuid() != 0 {
		t.Skip("entering a network namespace needs root")
	}
	var elsewhere int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		port := r.Host[len("127.0.0.1:"):]
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/broken", http.StatusFound)
		case "/off":
			http.Redirect(w, r, "http://localhost:"+port+"/broken", http.StatusFound)
		case "/broken":
			if r.Host != "127.0.0.1:"+port {
				elsewhere++
			}
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	// The test's own namespace stands for the task's.
	p := &prober{taskID: "t", host: func() string { return "127.0.0.1" }, netns: "/proc/self/ns/net"}
	for path, ok := range map[string]bool{"/same": false, "/off": true} {
		err := p.httpGet(context.Background(), &task.HTTPGetProbe{Path: path, Port: port, Scheme: "HTTP"})
		if (err == nil) != ok {
			t.Errorf("%s: probe error %v, want success=%v", path, err, ok)
		}
	}
	if elsewhere != 0 {
		t.Errorf("the redirect to another host was followed %d times", elsewhere)
	}
}
