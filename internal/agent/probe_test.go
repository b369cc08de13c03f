package agent_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"vessel.dev/vessel/internal/task"
)

// TestProbesRunInTheTasksNamespace proves that HTTP probes dial from the
// task's network namespace: 127.0.0.1 is the task's loopback, never the
// host's, and a redirect off the task is not followed (the kubelet's rule:
// the probe succeeds with the redirect's response).
func TestProbesRunInTheTasksNamespace(t *testing.T) {
	e := newEnv(t, 100*time.Millisecond)
	var hostHits atomic.Int32
	host := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostHits.Add(1)
		fmt.Fprintln(w, "the host answered")
	}))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host.Listener = ln
	host.Start()
	defer host.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	probe := func(path string) *task.Probe {
		return &task.Probe{HTTPGet: &task.HTTPGetProbe{Host: "127.0.0.1", Port: port, Path: path},
			Period: 200 * time.Millisecond, Timeout: 2 * time.Second, FailureThreshold: 1}
	}

	// The task serves on its own 127.0.0.1 at the port the host also
	// listens on: its probe must reach the task.
	own := e.run(task.RestartAlways, fmt.Sprintf("mkdir -p /www; echo ok >/www/index.html; exec httpd -f -p 127.0.0.1:%d -h /www", port),
		func(c *task.Container) { c.ReadinessProbe = probe("/index.html") })
	// Nothing listens in the task: a liveness probe at 127.0.0.1 fails
	// and restarts the container.
	none := e.run(task.RestartAlways, "exec sleep 1000", func(c *task.Container) {
		c.StopTimeout = time.Second
		c.LivenessProbe = probe("/")
	})
	// The task redirects to the host (a name other than the probe's
	// host): not followed, and the probe succeeds.
	redirect := fmt.Sprintf("mkdir -p /www/cgi-bin; printf '#!/bin/sh\\nprintf \"HTTP/1.0 302 Found\\\\r\\\\nLocation: http://localhost:%d/\\\\r\\\\nContent-Length: 0\\\\r\\\\n\\\\r\\\\n\"\\n' >/www/cgi-bin/go; "+
		"chmod +x /www/cgi-bin/go; exec httpd -f -p 127.0.0.1:%d -h /www", port, port)
	redir := e.run(task.RestartAlways, redirect, func(c *task.Container) { c.ReadinessProbe = probe("/cgi-bin/go") })

	e.waitFor(own, 30*time.Second, "ready (its own server)", func(t *task.Task) bool { return t.Containers[0].Ready })
	e.waitFor(none, 30*time.Second, "a restart (liveness failed)", func(t *task.Task) bool { return t.Containers[0].RestartCount >= 1 })
	e.waitFor(redir, 30*time.Second, "ready (redirect not followed)", func(t *task.Task) bool { return t.Containers[0].Ready })
	if n := hostHits.Load(); n != 0 {
		t.Errorf("probes pointed at 127.0.0.1 reached the host's server %d times", n)
	}
}
