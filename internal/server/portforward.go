package server

import (
	"context"
	"net/url"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
)

// taskPortDialer is the ability of an in-process agent (the one of
// `vessel server`) to connect to a port of one of its tasks: found on its
// execer (SetLocalExecer) by type assertion.
type taskPortDialer interface {
	// DialTaskPort connects to port of task id's own address on the
	// agent's host, as agent.Agent.DialTaskPort does.
	DialTaskPort(ctx context.Context, id string, port int) (agentproto.Conn, error)
}

// TaskPortForward connects to port of a running task's own address, from
// the host that runs it: through the in-process agent, or the port-forward
// endpoint of the task's host's agent (never from this host across the
// fleet's network). ctx bounds the connection's life; the caller closes
// it. A task not in cluster is an error of kind errdefs.ErrNotFound, a
// task not running one of errdefs.ErrConflict, a host out of reach or a
// port nothing accepts on one of errdefs.ErrUnavailable.
func (s *Server) TaskPortForward(ctx context.Context, cluster, taskID string, port int) (agentproto.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, errdefs.InvalidArgument("port %d is not a TCP port: give one from 1 to 65535", port)
	}
	t, err := s.runningTask(ctx, cluster, taskID, "port-forward")
	if err != nil {
		return nil, err
	}
	s.execs.mu.Lock()
	ex := s.execs.local[t.HostID]
	s.execs.mu.Unlock()
	if ex != nil {
		d, ok := ex.(taskPortDialer)
		if !ok {
			return nil, errdefs.Unavailable("host %s of task %s serves no port-forward", t.HostID, taskID)
		}
		return d.DialTaskPort(ctx, taskID, port)
	}
	client, base, err := s.agentEndpoint(ctx, t, "port-forward")
	if err != nil {
		return nil, err
	}
	return client.PortForward(ctx, base+"/agent/v1/portforward/"+url.PathEscape(taskID), port)
}

// publicPortForward is the agentproto.PortDialer of the public
// port-forward route.
type publicPortForward struct {
	s           *Server
	cluster, id string
}

func (p publicPortForward) DialPort(ctx context.Context, port int) (agentproto.Conn, error) {
	return p.s.TaskPortForward(ctx, p.cluster, p.id, port)
}
