// Package server is Vessel's control plane: the ECS JSON and EKS REST API
// (SigV4-authenticated), the host registry and agent protocol, and the
// lifecycle controller that places tasks with the scheduler, stops what
// cannot start, declares silent hosts lost and removes stopped tasks after
// their retention, and applies in the same pass the ECS service planner's
// results (internal/service: desired counts, rolling deployments, the
// circuit breaker, the service throttle).
//
// Requests are throttled per access key after SigV4 verification, and task
// launches by one Fargate-like bucket (throttle.go), answered as AWS does.
//
// The store is the only truth: every handler and the controller read and
// write it with revision checks, so a crash between two writes loses nothing
// and a restarted server carries on from what is stored.
//
// Several servers may share one distributed store; Config.Leadership
// (leadership.go) says when this one runs the controller (and what
// OnLeadership registered): during each term of leadership, with the
// term's context, whose store fence refuses the controller's writes once
// the term is over. Heartbeats are stored, so that any leader judges every
// host alike. A single process is always the leader (AlwaysLeader).
//
// The fleet's subnets are defined here (Config.Fleet, slices.go): a host
// serving one is given, at registration, a slice of it for its tasks'
// addresses, a record of its own (slices/<subnet>/<address>_<bits>)
// created only if absent, so that no two replicas hand one slice twice; a
// host keeps its slices across restarts until ReleaseHostSlices (after
// `vessel host rm`, once its tasks are gone). HostNetwork serves each host
// its subnets, slices and peers (a long poll), and the controller gives
// the scheduler each host's free addresses per subnet.
//
// Logs, execs and port-forwards of a task are relayed from its host: the
// in-process agent's (SetLocalLogSource, SetLocalExecer, whose execer also
// dials its tasks' ports) or a remote agent's endpoint.
//
// It may import store, scheduler, service, task, sizing, profile, auth,
// agentproto, tlsutil, errdefs, runtime (its types only) and api; nothing
// imports it but the CLI.
//
//	srv, err := server.New(server.Config{Store: st, Keys: keys})
//	go srv.Run(ctx)                        // controller
//	http.ListenAndServe(addr, srv.Handler())
package server
