// Package gvisor is the gVisor back end of runtime.Runtime: each sandbox is
// one gVisor sandbox (runsc: the sentry, a user-space kernel, with its
// gofers) whose netstack takes over the task's network namespace, limited
// as a whole to the task's provisioned size. Its root container runs a
// pause program generated here (pause.go); every container of the task is
// a sub-container of it, under a conmon of its own that outlives the
// agent.
//
// Bundles, storage, cgroups, conmon, records and the frames of every call
// are the toolkit's (toolkit.Sandboxes, with runsc as the OCI runtime);
// this package adds what differs: the cgroup vessel/<id>/.sandbox runsc
// puts the sandbox in (a 250 ms CFS period, the host's pids limit above
// the task's for gVisor's own threads), booting the sandbox at Create,
// the sub-containers' bundles (annotations, RLIMIT_NPROC, a read-only
// /tmp on a read-only root) and the runtime and monitor scripts conmon
// runs (script.go), the OOM rule (the sandbox's cgroups), destroy's order
// and runsc's state in Leftovers. runsc withholds CAP_NET_RAW.
//
// It keeps warm sandboxes (runtime.Warmer): Warm boots the gVisor sandbox
// with its pause container at the warm class's size (Config's
// WarmMilliCPU, WarmMemoryMiB); Claim lowers its host cgroups to the
// task's and writes the sub-containers' bundles. The sandbox and its root
// container keep the warm ID for their life. runsc has one hostname per
// sandbox, set at boot, so a claim for another (a pod's name) runs a tiny
// hostname setter in the pause container (pause.go) before the task's
// containers exist.
//
//	rt, err := gvisor.New(gvisor.Config{StateDir: filepath.Join(dataDir, "sandboxes", "gvisor"),
//		RunscPath: runscPath})
//	err = rt.Create(ctx, runtime.Spec{ID: taskID, MilliCPU: 250, MemoryMiB: 512,
//		NetNSPath: a.NetNSPath, EtcDir: a.EtcDir, LogDir: logDir,
//		Containers: []runtime.ContainerSpec{{Name: "app", Layers: layers, Args: args}}})
//	err = rt.Start(ctx, taskID, "app")
//	st, err := rt.Wait(ctx, taskID, "app")
//	err = rt.Delete(ctx, taskID)
//
// This package imports runtime, runtime/toolkit and errdefs; it must not
// import another back end, the agent, the server or network (tests use
// network to wire sandboxes).
package gvisor
