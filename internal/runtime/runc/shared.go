package runc

import (
	"context"
	"vessel.dev/vessel/internal/fsutil"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"vessel.dev/vessel/internal/runtime"
)

// This file exports the host-side building blocks of this back end for
// other OCI runtimes that run the same bundles (the gvisor back end): spec
// checks, the OCI bundle, cgroups, ephemeral storage, conmon (Conmon) and
// process helpers. They hold no state of a Runtime.

// BundleParams is what goes into one container's config.json beyond its
// ContainerSpec.
type BundleParams struct {
	ID, Name   string // the sandbox and the container
	Rootfs     string
	Hostname   string
	NetNSPath  string
	EtcDir     string // hosts, hostname, resolv.conf, bind-mounted read-only
	HostNofile uint64 // the agent's RLIMIT_NOFILE hard limit
	User       specs.User
	// InitPath is the host's static init (tini-static), bound read-only
	// at /sbin/vessel-init in containers whose Security.Init is set.
	InitPath string
}

// OCISpec returns the container's OCI spec as the runc back end runs it:
// c.Security (capabilities, the seccomp allow-list for them, a read-only
// root, supplemental groups, an init), no new privileges, masked paths,
// RLIMIT_NOFILE, the /etc bind mounts, and the cgroup vessel/<ID>/<Name>
// under the sandbox's. An init asked for without InitPath is an error of
// kind errdefs.ErrUnavailable.
func OCISpec(c runtime.ContainerSpec, p BundleParams) (*specs.Spec, error) {
	return ociSpec(c, bundleParams{id: p.ID, name: p.Name, rootfs: p.Rootfs, hostname: p.Hostname,
		netnsPath: p.NetNSPath, etcDir: p.EtcDir, hostNofile: p.HostNofile, user: p.User, initPath: p.InitPath})
}

// CheckUserFiles refuses, with an error of kind
// errdefs.ErrInvalidArgument, an image in rootfs whose /etc/passwd or
// /etc/group is not a regular file or is too large to read.
func CheckUserFiles(rootfs string) error { return checkUserFiles(rootfs) }

// FindInit returns the host's static init for containers (Debian's
// tini-static), or "" when there is none.
func FindInit() string { return findInit() }

// ResolveUser turns a container's User ("", "uid", "uid:gid", "name",
// "name:group") into numeric IDs read from the image in rootfs.
func ResolveUser(rootfs, user string) (specs.User, error) { return resolveUser(rootfs, user) }

// ValidName checks a sandbox ID or container name.
func ValidName(s string) error { return validName(s) }

// CheckSpec validates a spec for Create; errors are of kind
// errdefs.ErrInvalidArgument.
func CheckSpec(spec *runtime.Spec) error { return checkSpec(spec) }

// FillDefaults sets the spec's unset PidsLimit, EphemeralStorageGiB and
// LogMaxBytes to this package's defaults (those of Fargate).
func FillDefaults(spec *runtime.Spec) { fillDefaults(spec) }

// WriteEtc writes minimal hosts, hostname and resolv.conf into dir.
func WriteEtc(dir, hostname string) error { return writeEtc(dir, hostname) }

// MountOverlay mounts layers (bottom first) read-only under upper/work at
// rootfs.
func MountOverlay(rootfs string, layers []string, upper, work string) error {
	return mountOverlay(rootfs, layers, upper, work)
}

// Unmount unmounts path until it is no mount point, detaching it lazily
// when it stays busy.
func Unmount(path string) error { return unmount(path) }

// MountsUnder lists the mount points at or below dir.
func MountsUnder(dir string) []string { return mountsUnder(dir) }

// LoopDevicesOf lists the loop devices backed by file.
func LoopDevicesOf(file string) []string { return loopDevicesOf(file) }

// ReadPid reads a PID file; 0 when missing or malformed.
func ReadPid(path string) int { return readPid(path) }

// ProcessAlive reports whether pid runs (not a zombie) with command name
// comm.
func ProcessAlive(pid int, comm string) bool { return processAlive(pid, comm) }

// ProcessRunning reports whether pid exists and is neither a zombie nor
// dead, whatever its command.
func ProcessRunning(pid int) bool {
	_, running := procStat(pid)
	return running
}

// WriteFileAtomic writes data to path through a synced temporary file of
// mode 0600 in path's directory, renamed over path.
func WriteFileAtomic(path string, data []byte) error { return fsutil.WriteFileAtomic(path, data, "") }

// MakeExt4Image creates path (which must not exist) as a sparse file of
// sizeGiB formatted ext4 without a journal, as SetupStorage does before it
// mounts it: taken from the pool of formatted images beside path's
// sandbox directory when one is ready.
func MakeExt4Image(ctx context.Context, path string, sizeGiB int) error {
	return takeExt4Image(ctx, path, sizeGiB)
}

// ReadTail returns the last 2000 bytes of a file, trimmed.
func ReadTail(path string) string { return readTail(path) }

// DefaultPath is the PATH given to containers without one.
const DefaultPath = defaultPath

// Cgroups is the host's cgroup layout and the sandboxes' cgroups in it:
// vessel/<id> limited to the sandbox's size, containers' under it.
type Cgroups struct{ cg *cgroups }

// Limits is a sandbox's provisioned size as written to its cgroup.
type Limits struct {
	MilliCPU    int64
	MemoryBytes int64
	Pids        int64
	// CPUPeriodMicros is the CFS period the quota applies to; 100 ms
	// (runc's) by default.
	CPUPeriodMicros int64
}

// DetectCgroups finds the host's cgroup hierarchies (v2, v1 or hybrid).
func DetectCgroups() (*Cgroups, error) {
	cg, err := detectCgroups()
	if err != nil {
		return nil, err
	}
	return &Cgroups{cg}, nil
}

// V2 reports whether the host uses the unified hierarchy only.
func (c *Cgroups) V2() bool { return c.cg.v2 }

// Controller returns the mount point of the v1 hierarchy that carries
// controller ("cpu", "cpuacct", "memory" or "pids"); "" on a v2-only host
// or when it is not mounted.
func (c *Cgroups) Controller(controller string) string { return c.cg.v1[controller] }

// Hierarchies lists every hierarchy's mount point.
func (c *Cgroups) Hierarchies() []string { return append([]string(nil), c.cg.all...) }

// Create makes the sandbox's cgroup vessel/<id> and writes its limits.
func (c *Cgroups) Create(id string, l Limits) error {
	period := l.CPUPeriodMicros
	if period == 0 {
		period = cpuPeriodMicros
	}
	return c.cg.create(id, limits{milliCPU: l.MilliCPU, memory: l.MemoryBytes, pids: l.Pids, cpuPeriod: period})
}

// OOMKills returns the OOM kills the kernel counted in the cgroup at rel
// (relative to the memory hierarchy, e.g. SandboxCgroup(id)).
func (c *Cgroups) OOMKills(rel string) int64 { return c.cg.oomKills(rel) }

// Remove deletes the cgroups of the named children of vessel/<id>, then
// vessel/<id>, from every hierarchy.
func (c *Cgroups) Remove(id string, children []string) error { return c.cg.remove(id, children) }

// Leftovers lists the sandbox's cgroup directories that still exist, and
// the processes still in them.
func (c *Cgroups) Leftovers(id string) []string {
	out := c.cg.leftovers(id)
	return append(out, c.cg.processes(id)...)
}

// CgroupRoot is where the cgroup file systems are mounted (on a v2-only
// host, the unified hierarchy itself).
const CgroupRoot = cgroupRoot

// WriteCgroupFile writes value to a cgroup control file; the error names
// both.
func WriteCgroupFile(path, value string) error { return writeFile(path, value) }

// RemoveCgroupDir removes one cgroup directory, retrying for up to 3 s
// while the kernel still holds it busy; a missing one is no error.
func RemoveCgroupDir(dir string) error { return rmdirRetry(dir) }

// SandboxCgroup is the cgroup path of sandbox id relative to a hierarchy's
// root; ContainerCgroup the one of its container name.
func SandboxCgroup(id string) string         { return taskPath(id) }
func ContainerCgroup(id, name string) string { return containerPath(id, name) }
