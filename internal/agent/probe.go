package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// Kinds of probe verdicts the probe runner sends to its worker.
const (
	probeStarted       = "started"        // the startup probe passed (or there is none)
	probeStartupFailed = "startup-failed" // the startup probe failed FailureThreshold times
	probeLivenessFail  = "liveness-failed"
	probeReady         = "ready"
	probeNotReady      = "not-ready"
)

// probeEvent is a probe verdict about one run (gen) of a container.
type probeEvent struct {
	name string
	gen  int
	kind string
	msg  string
}

// prober runs one container run's probes, as the kubelet does: the startup
// probe first (its success sets Started), then liveness and readiness side
// by side. It reports verdict changes on events until ctx is done.
type prober struct {
	c      *task.Container
	taskID string
	host   func() string // the task's IP
	netns  string        // the task's network namespace, where probes dial from
	// ownStack says the sandbox takes the task's address into a network
	// stack of its own (gVisor's netstack, a micro-VM's kernel).
	ownStack bool
	runtime  string
	execer   runtime.Execer
	gen      int
	started  bool // the startup probe already passed (an adopted run)
	events   chan<- probeEvent
}

func (p *prober) send(ctx context.Context, kind, msg string) bool {
	select {
	case p.events <- probeEvent{name: p.c.Name, gen: p.gen, kind: kind, msg: msg}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *prober) run(ctx context.Context) {
	if sp := p.c.StartupProbe; sp != nil && !p.started {
		ok, msg := p.loop(ctx, sp.WithDefaults(), true, nil)
		if ctx.Err() != nil {
			return
		}
		if !ok {
			p.send(ctx, probeStartupFailed, msg)
			return
		}
	}
	if !p.send(ctx, probeStarted, "") {
		return
	}
	if rp := p.c.ReadinessProbe; rp != nil {
		go p.loop(ctx, rp.WithDefaults(), false, func(ok bool, msg string) bool {
			kind := probeNotReady
			if ok {
				kind = probeReady
			}
			p.send(ctx, kind, msg)
			return true
		})
	} else {
		p.send(ctx, probeReady, "")
	}
	if lp := p.c.LivenessProbe; lp != nil {
		go p.loop(ctx, lp.WithDefaults(), false, func(ok bool, msg string) bool {
			if !ok {
				p.send(ctx, probeLivenessFail, msg)
				return false
			}
			return true
		})
	}
}

// loop probes every Period after InitialDelay. With once, it returns at
// the first verdict (SuccessThreshold successes or FailureThreshold
// failures in a row). Otherwise it calls changed on each change of the
// verdict (the first verdict included) until changed returns false or ctx
// is done.
func (p *prober) loop(ctx context.Context, pr task.Probe, once bool, changed func(ok bool, msg string) bool) (bool, string) {
	if !sleepFor(ctx, pr.InitialDelay) {
		return false, ""
	}
	successes, failures := 0, 0
	verdict := 0 // 0 unknown, 1 passing, -1 failing
	for {
		err := p.probe(ctx, pr)
		if ctx.Err() != nil {
			return false, ""
		}
		msg := ""
		if err == nil {
			successes, failures = successes+1, 0
		} else {
			successes, failures = 0, failures+1
			msg = err.Error()
		}
		next := verdict
		if successes >= pr.SuccessThreshold {
			next = 1
		} else if failures >= pr.FailureThreshold {
			next = -1
		}
		if once && next != 0 {
			return next == 1, msg
		}
		if next != verdict && next != 0 {
			verdict = next
			if !changed(verdict == 1, msg) {
				return verdict == 1, msg
			}
		}
		if !sleepFor(ctx, pr.Period) {
			return false, ""
		}
	}
}

func sleepFor(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	return sleep(ctx, d) == nil
}

// probe runs one probe, bounded by its Timeout; nil is a success.
func (p *prober) probe(ctx context.Context, pr task.Probe) error {
	ctx, cancel := context.WithTimeout(ctx, pr.Timeout)
	defer cancel()
	switch {
	case len(pr.Exec) > 0:
		if p.execer == nil {
			return fmt.Errorf("the runtime cannot exec in containers")
		}
		code, err := p.execer.Exec(ctx, p.taskID, p.c.Name, runtime.ExecProcess{Args: pr.Exec})
		if err != nil {
			return fmt.Errorf("exec probe: %w", err)
		}
		if code != 0 {
			return fmt.Errorf("exec probe %q exited with code %d", strings.Join(pr.Exec, " "), code)
		}
		return nil
	case pr.HTTPGet != nil:
		return p.httpGet(ctx, pr.HTTPGet)
	case pr.TCPSocket != nil:
		addr := net.JoinHostPort(p.host(), strconv.Itoa(pr.TCPSocket.Port))
		conn, err := p.dial(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("tcp probe: %w", err)
		}
		conn.Close()
		return nil
	}
	return fmt.Errorf("probe has no handler")
}

// dial connects to address from inside the task's network namespace, never
// from the host's, so that 127.0.0.1 is the task's loopback and the host's
// addresses are as closed to a probe as to the task. A name is resolved on
// the host, as the kubelet resolves it. Sandboxes that take the task's
// address into themselves (gVisor's netstack, a micro-VM) leave the
// namespace without it: their probes dial from the host, which reaches the
// task through its bridge, and only the task's own address (127.0.0.1 of
// such a task is inside the sandbox, out of reach: a probe there fails).
func (p *prober) dial(ctx context.Context, _, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, lerr := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
		if lerr != nil || len(ips) == 0 {
			return nil, fmt.Errorf("resolve probe host %q: %v", host, lerr)
		}
		ip = ips[0]
	}
	ip = ip.Unmap()
	addr := net.JoinHostPort(ip.String(), port)
	if p.ownStack {
		if ip.String() != p.host() {
			return nil, fmt.Errorf("probe host %s is not the task's address %s: the %s sandbox keeps its own network stack, which probes reach only at the task's address", ip, p.host(), p.runtime)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	if p.netns == "" {
		return nil, fmt.Errorf("task %s has no network namespace to probe from", p.taskID)
	}
	return network.DialInNamespace(ctx, p.netns, "tcp", addr)
}

// maxProbeRedirects is the kubelet's limit.
const maxProbeRedirects = 10

// sameHostRedirects is the kubelet's redirect rule for probes: follow a
// redirect to the same host name (another port or scheme included), and
// stop at one to another host, whose response then decides the probe
// (a 3xx: a success).
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= maxProbeRedirects {
		return fmt.Errorf("stopped after %d redirects", maxProbeRedirects)
	}
	return nil
}

// httpGet asks the task's IP (or the probe's Host) from inside the task's
// network namespace; a status of 200..399 is a success. Certificates are
// not checked, as the kubelet does not; redirects are followed only on the
// same host.
func (p *prober) httpGet(ctx context.Context, h *task.HTTPGetProbe) error {
	host := h.Host
	if host == "" {
		host = p.host()
	}
	path := h.Path
	if path == "" {
		path = "/"
	}
	u := (&url.URL{Scheme: strings.ToLower(h.Scheme), Host: net.JoinHostPort(host, strconv.Itoa(h.Port))}).String() + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("http probe: %w", err)
	}
	req.Header.Set("User-Agent", "kube-probe/vessel")
	req.Header.Set("Accept", "*/*")
	for _, hd := range h.Headers {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext:       p.dial,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
		Proxy:             nil,
	}, CheckRedirect: sameHostRedirects}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("http probe: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("http probe %s: status %d", u, resp.StatusCode)
	}
	return nil
}
