package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	vkerrdefs "github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilexec "k8s.io/utils/exec"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/httpserve"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// serveKubeletAPI serves the kubelet API of every Vessel node: logs,
// exec, attach-less port-forward and the pod list, through
// virtual-kubelet's routes. Clients must present a certificate from the
// kubelet client CA, and the API server's authorizer must allow their
// user nodes/proxy (a SubjectAccessReview), as a kubelet in webhook
// authorization mode checks.
func (b *Bridge) serveKubeletAPI(ctx context.Context) error {
	mux := http.NewServeMux()
	api.AttachPodRoutes(api.PodHandlerConfig{
		RunInContainer:        b.execInContainer,
		GetContainerLogs:      b.containerLogs,
		PortForward:           b.portForward,
		GetPods:               (&podProvider{b}).GetPods,
		GetPodsFromKubernetes: (&podProvider{b}).GetPods,
		StreamIdleTimeout:     4 * time.Hour,
		StreamCreationTimeout: 30 * time.Second,
	}, mux, false)
	srv := httpserve.New(b.authorize(mux))
	srv.TLSConfig = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: b.certs.GetCertificate,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      b.clientCAs,
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(b.cfg.KubeletPort)))
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// sarCache remembers SubjectAccessReview answers for a short while.
type sarCache struct {
	mu  sync.Mutex
	ans map[string]time.Time // user|groups|verb → allowed until
}

// authorize checks the client's certificate subject against the API
// server's authorizer for nodes/proxy.
func (b *Bridge) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "Unauthorized: a client certificate from the kubelet client CA is required", http.StatusUnauthorized)
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		user, groups := leaf.Subject.CommonName, leaf.Subject.Organization
		verb := "get"
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			verb = "create"
		}
		key := user + "|" + strings.Join(groups, ",") + "|" + verb
		b.access.mu.Lock()
		until, ok := b.access.ans[key]
		b.access.mu.Unlock()
		if !ok || time.Now().After(until) {
			sar, err := b.kube.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups,
					ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: "nodes", Subresource: "proxy"}},
			}, metav1.CreateOptions{})
			if err != nil {
				http.Error(w, "authorization check failed: "+err.Error(), http.StatusInternalServerError)
				return
			}
			if !sar.Status.Allowed {
				http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=proxy)", user, verb), http.StatusForbidden)
				return
			}
			b.access.mu.Lock()
			b.access.ans[key] = time.Now().Add(time.Minute)
			b.access.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// podTask returns the task running pod namespace/name.
func (b *Bridge) podTask(namespace, name string) (*corev1.Pod, *task.Task, error) {
	b.mu.Lock()
	pod := b.bound[namespace+"/"+name]
	var t *task.Task
	if pod != nil {
		t = b.tasks[pod.UID]
	}
	b.mu.Unlock()
	if pod == nil || t == nil {
		return nil, nil, vkerrdefs.NotFoundf("pod %s/%s does not run on a Vessel node", namespace, name)
	}
	return pod, t, nil
}

// containerLogs streams a container's log through the control plane.
func (b *Bridge) containerLogs(ctx context.Context, namespace, name, container string, o api.ContainerLogOpts) (io.ReadCloser, error) {
	_, t, err := b.podTask(namespace, name)
	if err != nil {
		return nil, err
	}
	if t.Container(container) == nil {
		return nil, vkerrdefs.InvalidInputf("container %s is not valid for pod %s", container, name)
	}
	lo := agentproto.LogOptions{Container: container, Follow: o.Follow, Tail: o.Tail}
	switch {
	case !o.SinceTime.IsZero():
		lo.Since = o.SinceTime
	case o.SinceSeconds > 0:
		lo.Since = time.Now().Add(-time.Duration(o.SinceSeconds) * time.Second)
	}
	var until time.Time
	if o.Previous {
		prevStart, prevEnd, ok := previousRun(t.Container(container))
		if !ok {
			return nil, vkerrdefs.InvalidInputf("previous terminated container %q in pod %q not found", container, name)
		}
		// The run's start and end are stamped by the agent, its lines by
		// the container's monitor: a second of slack either side keeps the
		// run's first and last lines in (runs are at least the restart
		// back-off, 10 s, apart).
		lo.Follow, lo.Tail = false, 0
		if from := prevStart.Add(-previousSlack); lo.Since.Before(from) {
			lo.Since = from
		}
		until = prevEnd.Add(previousSlack)
	}
	pr, pw := io.Pipe()
	go func() {
		err := b.cfg.ControlPlane.TaskLogs(ctx, b.cfg.Cluster, t.ID, lo, func(l agentproto.LogLine) error {
			if !until.IsZero() && l.Time.After(until) {
				return errStopLogs
			}
			line := l.Text + "\n"
			if o.Timestamps {
				line = l.Time.UTC().Format(time.RFC3339Nano) + " " + line
			}
			_, err := io.WriteString(pw, line)
			return err
		})
		if errors.Is(err, errStopLogs) {
			err = nil
		}
		pw.CloseWithError(err)
	}()
	var rc io.ReadCloser = pr
	if o.LimitBytes > 0 {
		rc = limitReadCloser{io.LimitReader(pr, int64(o.LimitBytes)), pr}
	}
	return rc, nil
}

var errStopLogs = errors.New("past the previous run")

// previousSlack widens the window of a previous run's logs.
const previousSlack = time.Second

type limitReadCloser struct {
	io.Reader
	io.Closer
}

// execInContainer runs a command in a container of the pod's sandbox. A
// non-zero exit code is returned as a utilexec.CodeExitError, which the
// remote command protocol reports to kubectl.
func (b *Bridge) execInContainer(ctx context.Context, namespace, name, container string, cmd []string, attach api.AttachIO) error {
	_, t, err := b.podTask(namespace, name)
	if err != nil {
		return err
	}
	if t.Container(container) == nil {
		return vkerrdefs.InvalidInputf("container %s is not valid for pod %s", container, name)
	}
	p := runtime.ExecProcess{Args: cmd, TTY: attach.TTY()}
	if in := attach.Stdin(); in != nil {
		p.Stdin = in
	}
	if out := attach.Stdout(); out != nil {
		p.Stdout = out
	}
	if errw := attach.Stderr(); errw != nil {
		p.Stderr = errw
	}
	setResize(&p, attach.Resize())
	code, err := b.cfg.ControlPlane.TaskExec(ctx, b.cfg.Cluster, t.ID, container, p)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// portForward connects a stream to a port of the pod, as a kubelet does
// on the pod's own host: the control plane relays it to the agent of the
// host the pod's task runs on, which connects to the task's address there
// (its subnet's bridge is local), so that nothing crosses the fleet's
// network but the relay. The stream is spliced with half-closes: the
// client's end of input does not cut the pod's answer short.
func (b *Bridge) portForward(ctx context.Context, namespace, name string, port int32, stream io.ReadWriteCloser) error {
	_, t, err := b.podTask(namespace, name)
	if err != nil {
		return err
	}
	defer stream.Close()
	conn, err := b.cfg.ControlPlane.TaskPortForward(ctx, b.cfg.Cluster, t.ID, int(port))
	if err != nil {
		return fmt.Errorf("connecting to port %d of pod %s/%s: %w", port, namespace, name, err)
	}
	defer conn.Close()
	return agentproto.Splice(ctx, kubeletStream{stream}, conn)
}

// kubeletStream is virtual-kubelet's port-forward data stream as an
// agentproto.Conn: closing it ends only what the bridge sends (a SPDY
// stream's Close), which is also its CloseWrite.
type kubeletStream struct{ io.ReadWriteCloser }

func (s kubeletStream) CloseWrite() error { return s.Close() }

// setResize forwards terminal size changes to an exec.
func setResize(p *runtime.ExecProcess, ch <-chan api.TermSize) {
	if ch == nil {
		return
	}
	out := make(chan runtime.TerminalSize, 1)
	p.Resize = out
	go func() {
		defer close(out)
		for s := range ch {
			out <- runtime.TerminalSize{Width: s.Width, Height: s.Height}
		}
	}()
}

// previousRun returns when the container's previous run started and
// ended, for `kubectl logs --previous`.
func previousRun(c *task.Container) (start, end time.Time, ok bool) {
	if c.LastFinishedAt.IsZero() {
		return time.Time{}, time.Time{}, false
	}
	return c.LastStartedAt, c.LastFinishedAt, true
}
