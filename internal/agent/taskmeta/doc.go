// Package taskmeta is the host agent's task metadata endpoint, ECS's
// version 4 (and 3, the same answers): a container of an ECS task reads
// ECS_CONTAINER_METADATA_URI_V4 (http://169.254.170.2/v4/<container id>)
// and gets its own metadata (${URI}), its task's (${URI}/task) and Docker
// statistics from its sandbox's real counters (${URI}/stats,
// ${URI}/task/stats).
//
// The endpoint knows who asks by the connection's source address, never
// by the path: the host's firewall sends a task's connections to
// 169.254.170.2:80 to its subnet's gateway, port network.MetadataPort,
// where the Server listens, and lets nothing else reach that port; the
// bridge's anti-spoofing rules hold a task's source address to its own
// (internal/network, firewall_linux.go). The path's container ID must
// name a container of the caller's own task: any other is answered 404,
// the same as an ID that names nothing.
//
// It imports the task model and the runtime's Statser; the agent supplies
// the tasks (Source).
//
//	s, err := taskmeta.New(taskmeta.Config{Source: src, Listen: netMgr.MetadataListen()})
//	go s.Serve(ctx)
package taskmeta
