// Package agentproto is the protocol between the control plane and its host
// agents: the ControlPlane interface an agent talks to, the wire types, and
// an HTTP client and handler that carry it between processes. The server
// implements ControlPlane directly for its in-process agent and serves the
// same interface over HTTP, SigV4-signed, for `vessel agent --server URL`.
//
// This package imports task, errdefs and auth only; the agent and the server
// both import it, never the reverse.
package agentproto
