// Package cwlogs is the control plane's log store and its API: a
// wire-compatible subset of CloudWatch Logs (JSON 1.1, X-Amz-Target
// Logs_20140328.<Op>) over the events that host agents ship from the
// containers of tasks whose logConfiguration uses the awslogs driver.
//
// Layout in the shared store (names cannot hold ':', so it separates):
//
//	logs/groups/<group>                       the group: creation time, retention
//	logs/streams/<group>:<stream>             the stream: the source offset shipped up
//	                                          to (Acked) and an index of its batches
//	logs/events/<group>:<stream>:<16 hex>     one batch: up to BatchBytes of events,
//	                                          keyed by the source offset it starts at
//
// A batch holds events in the order of their source (a container's log
// file); each event carries the offsets where it starts and ends in that
// source. Ingest keeps only events starting at or after what the stream
// has already taken (the larger of its Acked and its last batch's end), so
// a batch sent again (an agent killed before it saved the acknowledged
// offset) adds nothing twice, and a batch record written without its
// stream record (a replica that failed between the two writes) is
// overwritten by the retry. Small batches are appended to the stream's last
// batch until it holds BatchBytes, so the index stays short.
//
// Retention: a group's retentionInDays, or Config.DefaultRetention for a
// group without one, hides older events from every read at once and a
// sweep (Run) deletes the batches that hold only such events. Size: a
// group holding more than Config.MaxGroupBytes loses its oldest batches
// first (each stream keeps its newest), with a warning in the server's
// log; DescribeLogGroups' storedBytes says what is kept.
//
// It imports errdefs and store only: internal/server routes the API's
// target to Service.ServeHTTP after authorising logs:<Op> (Action), and
// ingests the batches host agents send for their tasks' streams.
//
// Usage:
//
//	logs, err := cwlogs.New(cwlogs.Config{Store: st, Region: "us-east-1", AccountID: acct})
//	go logs.Run(ctx) // retention sweeps
//	err = logs.EnsureStream(ctx, "/ecs/web", "ecs/web/0123abcd", true)
//	acked, err := logs.Ingest(ctx, "/ecs/web", "ecs/web/0123abcd", events)
package cwlogs
