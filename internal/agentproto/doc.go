// Package agentproto is the protocol between the control plane and its host
// agents: the ControlPlane interface an agent talks to, the wire types, and
// an HTTP client and handler that carry it between processes. The server
// implements ControlPlane directly for its in-process agent and serves the
// same interface over HTTP, SigV4-signed, for `vessel agent --server URL`.
// The HTTP Client may be given several control plane replicas' URLs: it
// keeps to the one that answers and moves to the next when one refuses the
// connection, fails (5xx) or does not answer in time, sending again only
// calls that are safe to repeat.
//
// Besides the calls of ControlPlane, an agent that runs apart from the
// server serves its tasks' logs (LogsClient, ServeLogs), execs
// (ExecClient, ServeExec: SPDY streams, as `kubectl exec`) and
// port-forwards (ExecClient.PortForward, ServePortForward: one SPDY stream
// spliced, with half-closes, to the task's own address on the agent's
// host) on its LogsEndpoint; the server's public API relays all three.
//
// This package imports task, errdefs, auth, profile, tlsutil and runtime
// (for the exec's process and terminal types) only; the agent and the
// server both import it, never the reverse.
package agentproto
