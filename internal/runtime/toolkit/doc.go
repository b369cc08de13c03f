// Package toolkit holds what the runtime back ends (runc, gvisor, microvm)
// build their sandboxes from on the host, so that each rule is written
// once: it is no back end itself. Its name says that role: the back ends
// are the runtimes, this is the kit they share (as Nomad's drivers share
// drivers/shared/executor and eventer).
//
//   - Sandbox records and their store (record.go): Record (spec, ready,
//     starts, restarts) embedded in each back end's own record,
//     <dir>/<id>/sandbox.json written atomically by Store, which also
//     makes a sandbox's directory, lists the sandboxes and holds a lock
//     per sandbox (Locks).
//   - Exits (exit.go): WaitExit, the polling loop of every Wait, and
//     SetAsideExit, the exit file set aside for a restart.
//   - Defaults of a spec (defaults.go); the rules a spec must follow are
//     runtime.Spec.Validate, which every back end calls.
//   - Cgroups (cgroup.go): the host's layout (v1, v2, hybrid) and a
//     sandbox's cgroup vessel/<id> limited to its size.
//   - Storage (storage.go): the ephemeral storage (a loop-mounted sparse
//     ext4 file, from a pool of formatted ones), overlay root file
//     systems, unmounting, loop devices.
//   - OCI bundles (oci.go, subpath.go): a container's OCI spec with its
//     runtime.Security, users resolved in the image, sub-path mounts.
//   - Processes (process.go, conmon.go): PID files, liveness, the host's
//     limits and init, and Conmon, the monitor that outlives the agent.
//   - Sandboxes (sandboxes.go, exec.go): the conmon-backed core of the back ends
//     that run OCI bundles (runc, gvisor): Create's, Start's and
//     Restart's frames, Wait, List, Signal, Exec, Delete and Leftovers,
//     with the OCI runtime's commands filled in by the back end; and the
//     frames of warm sandboxes (Warm, Claim): a claimed warm sandbox keeps
//     its warm ID's directory and cgroup (Record.Home), and its task's ID
//     maps to it by a link in Dir (Store.Claim: the link, then the record,
//     which commits; Store.SandboxDir and Store.Home resolve it).
//
// A back end built on Sandboxes:
//
//	sb := &toolkit.Sandboxes{Name: "runc", Store: toolkit.Store{Dir: stateDir, Reserved: []string{"runc-root"}},
//		Cgroups: cg, Command: command, Run: run, OOMKilled: oomKilled, Destroy: destroy}
//	err := sb.Create(ctx, spec, func(rec *toolkit.ConmonRecord) error {
//		return sb.Prepare(ctx, rec, nil, nil) // storage, directories, bundles
//	})
//
// One with records of its own:
//
//	type record struct {
//		toolkit.Record
//		Disks []disk `json:"disks"`
//	}
//	store := toolkit.Store{Dir: stateDir, Reserved: []string{"cache"}}
//	unlock := store.Lock(id)
//	err := store.Make(&record{Record: toolkit.Record{Spec: spec}})
//
// This package imports runtime, runtime/seccomp, errdefs, fsutil and pty;
// it must not import a back end, the agent, the server or network.
package toolkit
