// Package runc is the runc back end of runtime.Runtime: each container of
// a sandbox runs with runc under a conmon of its own that outlives the
// agent, in the sandbox's cgroup vessel/<id>, limited to the task's
// provisioned size, on an overlay root over the image's layers and a
// loop-mounted ext4 file bounding its ephemeral storage.
//
// The sandboxes' records, bundles, storage, cgroups, conmons, exit files
// and the frames of every call are the toolkit's (toolkit.Sandboxes);
// this package adds runc's part: its commands (runc's state in
// <StateDir>/runc-root, "runc start" after conmon's "runc create", "runc
// kill --all" and "runc delete" when a sandbox is destroyed), its
// OOM-kill rule (a kill counted in the container's memory cgroup, or more
// than at Create in the sandbox's) and runc's state in Leftovers.
//
// It keeps warm sandboxes (runtime.Warmer, of any size): Warm makes the
// cgroup and mounts the ephemeral storage ahead; Claim writes the task's
// limits and adds its overlays and bundles; the sandbox keeps its warm
// ID's directory and cgroup, found by the task's ID through the toolkit's
// mapping.
//
//	rt, err := runc.New(runc.Config{StateDir: filepath.Join(dataDir, "sandboxes", "runc")})
//	err = rt.Create(ctx, runtime.Spec{ID: taskID, MilliCPU: 250, MemoryMiB: 512,
//		NetNSPath: a.NetNSPath, EtcDir: a.EtcDir, LogDir: logDir,
//		Containers: []runtime.ContainerSpec{{Name: "app", Layers: layers, Args: args}}})
//	err = rt.Start(ctx, taskID, "app")
//	st, err := rt.Wait(ctx, taskID, "app")
//	err = rt.Delete(ctx, taskID)
//
// This package imports runtime, runtime/toolkit and errdefs; it must not
// import another back end, the agent, the server or network (tests use
// network to wire two sandboxes).
package runc
