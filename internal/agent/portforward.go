package agent

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
)

// portDialTimeout bounds the connection to a task's port.
const portDialTimeout = 10 * time.Second

// DialTaskPort connects to port of task id's own address on this host
// (its subnet's bridge is here: nothing crosses another host), for a
// port-forward; the caller closes the connection. Only the task's own
// address is ever dialled, whatever asks. A task this host does not run
// is an error of kind errdefs.ErrNotFound; one without an address here
// (a sandbox without networking, a task not yet attached or already
// released) one of errdefs.ErrConflict; a port nothing accepts on one of
// errdefs.ErrUnavailable. It blocks until connected or refused.
func (a *Agent) DialTaskPort(ctx context.Context, id string, port int) (agentproto.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, errdefs.InvalidArgument("port %d is not a TCP port: give one from 1 to 65535", port)
	}
	a.mu.Lock()
	w := a.workers[id]
	a.mu.Unlock()
	if w == nil {
		return nil, errdefs.NotFound("task %s does not run on host %s", id, a.cfg.Host.ID)
	}
	if a.cfg.Network == nil || w.simulated() {
		return nil, errdefs.Conflict("task %s runs on the %s runtime, whose sandboxes have no address to forward to", id, w.rt.Name())
	}
	att, ok := a.cfg.Network.Get(id)
	if !ok || !att.IP.IsValid() {
		return nil, errdefs.Conflict("task %s has no address on host %s (not started yet, or stopped): port-forward needs a RUNNING task", id, a.cfg.Host.ID)
	}
	addr := net.JoinHostPort(att.IP.String(), strconv.Itoa(port))
	d := net.Dialer{Timeout: portDialTimeout}
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, errdefs.Unavailable("nothing accepts connections on port %d of task %s (%s)", port, id, addr)
		}
		return nil, errdefs.Unavailable("connecting to port %d of task %s (%s): %v", port, id, addr, err)
	}
	return c.(*net.TCPConn), nil
}

// portTarget is one task's agentproto.PortDialer.
type portTarget struct {
	a  *Agent
	id string
}

func (t portTarget) DialPort(ctx context.Context, port int) (agentproto.Conn, error) {
	return t.a.DialTaskPort(ctx, t.id, port)
}
