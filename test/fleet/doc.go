// Package fleet runs a fleet of machines for tests: each Machine is a
// network namespace of its own with its own address on a bridge that the
// fleet shares, and the processes a test starts on it (etcd members,
// `vessel server` replicas, `vessel agent` hosts) see only that address,
// as on separate machines. The test process reaches every machine through
// the bridge's address.
//
// Everything is removed when the test ends, in this order: the tests' own
// cleanups (registered after the fleet, so they run first: stop the tasks
// before the agents), the tasks the fleet's servers still run (services
// scaled to zero and deleted, tasks stopped and awaited), every process
// (SIGCONT, SIGTERM, SIGKILL after 15 s), the namespaces, veths and the
// bridge. Then the fleet checks that nothing of it is left: no process
// naming one of its data directories, no mount under them, no namespace or
// link of its own; anything found fails the test.
//
// A vessel server on a machine listens on the machine's address, so it
// speaks TLS with its CA: the fleet gives every replica the first one's CA
// and encryption key (copied into its data directory), as the README's "three machines" section tells an
// operator to, and its clients trust that CA.
//
// It needs root. Package e2e builds the vessel binary and passes its path.
//
//	f := fleet.New(t, fleet.Config{Vessel: vesselBin})
//	etcd := f.Etcd(3)
//	replicas := f.Servers(3, fleet.ServerConfig{Etcd: etcd})
//	host := f.Agent(replicas, fleet.AgentConfig{Runtime: "runc"})
//	leader := f.Leader(replicas, 30*time.Second)
//	leader.Kill()
//
// It imports nothing of Vessel's but etcdtest, testutil and awsclient (it drives the
// built binary, as users do).
package fleet
