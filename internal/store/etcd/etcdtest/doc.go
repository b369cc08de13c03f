// Package etcdtest starts a real etcd cluster for tests: members run from
// the etcd binary that scripts/build-k8s builds ($KUBEBUILDER_ASSETS/etcd,
// or VESSEL_ETCD), on free loopback ports, with data directories in
// t.TempDir, and are all stopped when the test ends.
//
// It owns the members' processes, ports and data directories, and knows
// who leads (WaitLeader, LeaderIndex) so that tests write only once the
// survivors of a kill agree. It must not import any Vessel package.
// VESSEL_ETCD_LOGS=1 prints the members' logs at the end of each test.
//
// Usage:
//
//	c := etcdtest.Start(t, 3)
//	s, err := etcd.Open(ctx, etcd.Config{Endpoints: c.Endpoints()})
//	c.Kill(0)  // SIGKILL member 0
//	c.Start(0) // and bring it back with its data
//
// A test that checks what was written, by anyone, reads etcd's own
// history: Client, Revision and History.
//
//	cli := c.Client()
//	from, _ := etcdtest.Revision(ctx, cli)
//	// ... the writes under test ...
//	to, _ := etcdtest.Revision(ctx, cli)
//	events, _ := etcdtest.History(ctx, cli, "/vessel/", from+1, to)
package etcdtest
