package toolkit

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/cgroupstat"
)

// SandboxUsage is runtime.Statser's answer for runtimes whose sandboxes
// and containers have cgroups of their own (SandboxCgroup,
// ContainerCgroup): the container's cgroup, or the sandbox's when
// container is "". A missing cgroup is errdefs.ErrNotFound.
func (cg *Cgroups) SandboxUsage(id, container string) (runtime.Usage, error) {
	rel := SandboxCgroup(id)
	if container != "" {
		rel = ContainerCgroup(id, container)
	}
	u, err := cg.Usage(rel)
	if errors.Is(err, fs.ErrNotExist) {
		if container != "" {
			return u, errdefs.NotFound("sandbox %s has no container %s with counters (not started, or gone): %v", id, container, err)
		}
		return u, errdefs.NotFound("sandbox %s has no counters (it does not exist): %v", id, err)
	}
	return u, err
}

// Usage reads the CPU and memory counters of the cgroup at rel (a path
// relative to each hierarchy's root, e.g. SandboxCgroup(id)): cpuacct and
// memory on v1, cpu.stat and memory.* on v2. A cgroup that does not exist
// is an error that wraps fs.ErrNotExist.
func (cg *Cgroups) Usage(rel string) (runtime.Usage, error) {
	if cg.v2 {
		return cgroupstat.V2(filepath.Join(CgroupRoot, rel))
	}
	if cg.v1["cpuacct"] == "" {
		return runtime.Usage{}, fmt.Errorf("cgroups: the v1 cpuacct controller is not mounted under %s", CgroupRoot)
	}
	return cgroupstat.V1(filepath.Join(cg.v1["cpuacct"], rel), filepath.Join(cg.v1["memory"], rel))
}
