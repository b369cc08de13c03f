package server

import (
	"fmt"
	"slices"
	"strings"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

// Every field of a task definition is either honoured or refused here,
// with a ClientException naming the field and saying what is accepted, as
// Fargate refuses what it does not support. Honoured (besides sizes,
// images, commands, environment, ports, dependsOn, health checks, stop
// timeouts and registry credentials): user, readonlyRootFilesystem,
// linuxParameters.capabilities (add only SYS_PTRACE) and
// initProcessEnabled become the container's task.Security; task-local
// volumes (a name, or host without sourcePath: Fargate's bind mounts) are
// empty directories shared by the containers that mount them with
// mountPoints or volumesFrom. Kept as given and shown by
// DescribeTaskDefinition without further effect: dockerLabels, taskRoleArn,
// executionRoleArn. logConfiguration with the awslogs driver is honoured:
// its options are checked by task.ParseAWSLogs and the host agent ships
// the container's output to the control plane's log store (cwlogs.go).

// LogDriverAWSLogs is the one log driver accepted.
const LogDriverAWSLogs = task.LogDriverAWSLogs

// validateTaskFields refuses the task-level fields a sandbox cannot honour.
func validateTaskFields(in *api.RegisterTaskDefinitionInput) error {
	bad := func(format string, args ...any) error {
		return clientException(errdefs.InvalidArgument(format, args...))
	}
	switch {
	case in.PidMode != "":
		return bad("pidMode %q is not supported: each container has a process namespace of its own (leave pidMode unset)", in.PidMode)
	case in.IpcMode != "":
		return bad("ipcMode %q is not supported on Fargate: each container has an IPC namespace of its own (leave ipcMode unset)", in.IpcMode)
	case len(in.PlacementConstraints) > 0:
		return bad("placementConstraints are not supported on Fargate: the scheduler places tasks by size, runtime and subnet")
	case in.ProxyConfiguration != nil:
		return bad("proxyConfiguration is not supported: tasks have no App Mesh proxy")
	case len(in.InferenceAccelerators) > 0:
		return bad("inferenceAccelerators are not supported: sandboxes get no accelerators")
	case in.EnableFaultInjection != nil && *in.EnableFaultInjection:
		return bad("enableFaultInjection is not supported (accepted: false or unset)")
	}
	if rp := in.RuntimePlatform; rp != nil {
		if os := rp.OperatingSystemFamily; os != "" && os != "LINUX" {
			return bad("runtimePlatform.operatingSystemFamily %q is not supported: tasks run Linux (accepted: LINUX)", os)
		}
		if a := rp.CpuArchitecture; a != "" && a != "X86_64" && a != "ARM64" {
			return bad("runtimePlatform.cpuArchitecture %q is not valid: accepted values are X86_64, ARM64", a)
		}
	}
	names := map[string]bool{}
	for i, v := range in.Volumes {
		name := deref(v.Name)
		if name == "" {
			return bad("volumes[%d]: name is required", i)
		}
		if names[name] {
			return bad("volume %q is declared twice: volume names must be unique in a task definition", name)
		}
		names[name] = true
		if v.Host != nil && deref(v.Host.SourcePath) != "" {
			return bad("volume %q: host sourcePath is not supported: tasks cannot mount paths of their host "+
				"(omit sourcePath for a volume shared by the task's containers)", name)
		}
		if len(v.DockerVolumeConfiguration) > 0 || len(v.EfsVolumeConfiguration) > 0 || len(v.FsxWindowsFileServerVolumeConfiguration) > 0 {
			return bad("volume %q: only task-local volumes (a name, or host with no sourcePath) are supported, "+
				"not dockerVolumeConfiguration, efsVolumeConfiguration or fsxWindowsFileServerVolumeConfiguration", name)
		}
		if v.ConfiguredAtLaunch != nil && *v.ConfiguredAtLaunch {
			return bad("volume %q: configuredAtLaunch is not supported: volumes are task-local directories", name)
		}
	}
	return nil
}

// validateContainerFields refuses the fields of one container definition
// that a sandbox cannot honour. bad formats the message with the
// container's name.
func validateContainerFields(c *api.ContainerDefinition, bad func(string, ...any) error) error {
	if err := validateSecrets(c.Secrets, bad); err != nil {
		return err
	}
	switch {
	case deref(c.Privileged):
		return bad("privileged containers are not supported: sandboxes are never privileged")
	case len(c.Links) > 0:
		return bad("links are not supported with networkMode awsvpc: containers of a task reach each other on localhost")
	case deref(c.DisableNetworking):
		return bad("disableNetworking is not supported on Fargate: every task has its network interface")
	case len(c.DNSServers) > 0:
		return bad("dnsServers are not supported with networkMode awsvpc: tasks use their subnet's resolver")
	case len(c.DNSSearchDomains) > 0:
		return bad("dnsSearchDomains are not supported with networkMode awsvpc: tasks use their subnet's resolver")
	case len(c.ExtraHosts) > 0:
		return bad("extraHosts are not supported with networkMode awsvpc")
	case c.Hostname != nil:
		return bad("hostname is not supported with networkMode awsvpc: a task's hostname is derived from its IP")
	case len(c.DockerSecurityOptions) > 0:
		return bad("dockerSecurityOptions are not supported on Fargate: every container runs with no_new_privs and the default seccomp profile")
	case deref(c.Interactive):
		return bad("interactive is not supported: containers have no stdin (use `vessel exec -i` to attach to a running task)")
	case deref(c.PseudoTerminal):
		return bad("pseudoTerminal is not supported: containers have no terminal (use `vessel exec -t` for one)")
	case len(c.SystemControls) > 0:
		return bad("systemControls are not supported: sandboxes take no sysctls")
	case c.StartTimeout != nil:
		return bad("startTimeout is not supported: a container waits for its dependsOn conditions without a time limit (remove startTimeout)")
	case len(c.EnvironmentFiles) > 0:
		return bad("environmentFiles are not supported: give the variables in environment")
	case c.FirelensConfiguration != nil:
		return bad("firelensConfiguration is not supported: the host agent keeps every container's log")
	case len(c.CredentialSpecs) > 0:
		return bad("credentialSpecs are not supported: sandboxes do not join Active Directory")
	case c.RestartPolicy != nil && deref(c.RestartPolicy.Enabled):
		return bad("restartPolicy is not supported: an essential container's exit stops the task (accepted: enabled false or unset)")
	case c.VersionConsistency == "enabled":
		return bad("versionConsistency enabled is not supported: each task resolves its image's tag when it pulls it (accepted: disabled or unset)")
	case c.VersionConsistency != "" && c.VersionConsistency != "disabled":
		return bad("versionConsistency %q is not valid: accepted values are enabled, disabled", c.VersionConsistency)
	}
	if err := validateUlimits(c.Ulimits, bad); err != nil {
		return err
	}
	if lc := c.LogConfiguration; lc != nil {
		if lc.LogDriver != LogDriverAWSLogs {
			return bad("logConfiguration.logDriver %q is not supported: the accepted driver is %s (the host agent ships the container's output to the control plane's log store)",
				lc.LogDriver, LogDriverAWSLogs)
		}
		if len(lc.SecretOptions) > 0 {
			return bad("logConfiguration.secretOptions are not supported")
		}
		if _, err := task.ParseAWSLogs(lc.Options); err != nil {
			return bad("%v", err)
		}
	}
	if lp := c.LinuxParameters; lp != nil {
		switch {
		case len(lp.Devices) > 0:
			return bad("linuxParameters.devices are not supported: sandboxes get no host devices")
		case lp.SharedMemorySize != nil:
			return bad("linuxParameters.sharedMemorySize is not supported on Fargate")
		case len(lp.Tmpfs) > 0:
			return bad("linuxParameters.tmpfs is not supported on Fargate: use a task volume with mountPoints")
		case lp.MaxSwap != nil:
			return bad("linuxParameters.maxSwap is not supported on Fargate: sandboxes do not swap")
		case lp.Swappiness != nil:
			return bad("linuxParameters.swappiness is not supported on Fargate: sandboxes do not swap")
		}
	}
	if sec := containerSecurity(c); sec != nil {
		if err := sec.Validate("linuxParameters"); err != nil {
			return bad("%v", err)
		}
	}
	for _, rr := range c.ResourceRequirements {
		if rr.Type == "GPU" || rr.Type == "InferenceAccelerator" {
			return bad("resourceRequirements of type %s are not supported: sandboxes get no GPUs or accelerators", rr.Type)
		}
	}
	return nil
}

// containerSecurity is the container's task.Security, nil for the default
// sandbox.
func containerSecurity(c *api.ContainerDefinition) *task.Security {
	s := &task.Security{ReadOnlyRootFilesystem: deref(c.ReadonlyRootFilesystem)}
	if lp := c.LinuxParameters; lp != nil {
		s.InitProcess = deref(lp.InitProcessEnabled)
		if caps := lp.Capabilities; caps != nil {
			s.CapAdd = normalizeCaps(caps.Add)
			s.CapDrop = normalizeCaps(caps.Drop)
		}
	}
	if !s.ReadOnlyRootFilesystem && !s.InitProcess && len(s.CapAdd) == 0 && len(s.CapDrop) == 0 {
		return nil
	}
	return s
}

func normalizeCaps(cs []string) []string {
	var out []string
	for _, c := range cs {
		if n := task.NormalizeCapability(c); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// taskStorage turns the task definition's volumes into the task's and each
// container's mountPoints and volumesFrom into its mount points: a
// volumesFrom entry gives the container every mount point of its source
// (the source's own volumesFrom included), read-only when either says so.
// The result is checked with task.ValidateVolumes; errors are
// ClientExceptions naming the container and field.
func taskStorage(vols []api.Volume, defs []api.ContainerDefinition) ([]task.Volume, map[string][]task.MountPoint, error) {
	t := &task.Task{}
	for _, v := range vols {
		t.Volumes = append(t.Volumes, task.Volume{Name: deref(v.Name), EmptyDir: &task.EmptyDir{}})
	}
	byName := map[string]*api.ContainerDefinition{}
	for i := range defs {
		byName[deref(defs[i].Name)] = &defs[i]
	}
	mounts := map[string][]task.MountPoint{}
	var resolve func(name string, path []string) ([]task.MountPoint, error)
	resolve = func(name string, path []string) ([]task.MountPoint, error) {
		if m, ok := mounts[name]; ok {
			return m, nil
		}
		if slices.Contains(path, name) {
			return nil, clientException(errdefs.InvalidArgument("container %q: volumesFrom makes a cycle (%s → %s)",
				path[0], strings.Join(path, " → "), name))
		}
		c := byName[name]
		var out []task.MountPoint
		for _, mp := range c.MountPoints {
			out = append(out, task.MountPoint{SourceVolume: deref(mp.SourceVolume), ContainerPath: deref(mp.ContainerPath),
				ReadOnly: deref(mp.ReadOnly)})
		}
		for _, vf := range c.VolumesFrom {
			src := deref(vf.SourceContainer)
			if byName[src] == nil || src == name {
				return nil, clientException(errdefs.InvalidArgument(
					"container %q: volumesFrom names container %q, which is not another container of this task definition", name, src))
			}
			from, err := resolve(src, append(path, name))
			if err != nil {
				return nil, err
			}
			for _, m := range from {
				m.ReadOnly = m.ReadOnly || deref(vf.ReadOnly)
				out = append(out, m)
			}
		}
		mounts[name] = out
		return out, nil
	}
	for _, c := range defs {
		m, err := resolve(deref(c.Name), nil)
		if err != nil {
			return nil, nil, err
		}
		t.Containers = append(t.Containers, task.Container{Name: deref(c.Name), MountPoints: m})
	}
	if err := t.ValidateVolumes(); err != nil {
		return nil, nil, clientException(fmt.Errorf("mountPoints: %w", err))
	}
	return t.Volumes, mounts, nil
}

// validateOverrides refuses what RunTask's overrides ask for that a task
// cannot honour; the rest (command, environment, cpu, memory, ephemeral
// storage, roles) is applied by resolveTask.
func validateOverrides(ov *api.TaskOverride) error {
	if ov == nil {
		return nil
	}
	if len(ov.InferenceAcceleratorOverrides) > 0 {
		return clientException(errdefs.InvalidArgument("overrides.inferenceAcceleratorOverrides are not supported: sandboxes get no accelerators"))
	}
	for _, co := range ov.ContainerOverrides {
		name := deref(co.Name)
		switch {
		case len(co.EnvironmentFiles) > 0:
			return clientException(errdefs.InvalidArgument(
				"containerOverrides[%s].environmentFiles are not supported: give the variables in environment", name))
		case co.Cpu != nil && *co.Cpu < 0:
			return errdefs.InvalidArgument("containerOverrides[%s].cpu %d must not be negative", name, *co.Cpu)
		case co.Memory != nil && *co.Memory <= 0:
			return errdefs.InvalidArgument("containerOverrides[%s].memory %d must be positive", name, *co.Memory)
		case co.MemoryReservation != nil && *co.MemoryReservation <= 0:
			return errdefs.InvalidArgument("containerOverrides[%s].memoryReservation %d must be positive", name, *co.MemoryReservation)
		case co.MemoryReservation != nil && co.Memory != nil && *co.MemoryReservation > *co.Memory:
			return errdefs.InvalidArgument("containerOverrides[%s].memoryReservation %d MiB must not exceed memory %d MiB",
				name, *co.MemoryReservation, *co.Memory)
		}
		for _, rr := range co.ResourceRequirements {
			if rr.Type == "GPU" || rr.Type == "InferenceAccelerator" {
				return clientException(errdefs.InvalidArgument(
					"containerOverrides[%s].resourceRequirements of type %s are not supported: sandboxes get no GPUs or accelerators", name, rr.Type))
			}
		}
	}
	return nil
}

// validateUlimits accepts the one ulimit a sandbox honours, nofile (the
// runtime clamps it to what its host allows), once, with 0 < soft <= hard.
func validateUlimits(us []api.Ulimit, bad func(string, ...any) error) error {
	seen := false
	for _, u := range us {
		if u.Name != "nofile" {
			return bad("ulimits name %q is not supported: the accepted ulimit is nofile (other limits are the sandbox's: its size and its pids limit)", u.Name)
		}
		if seen {
			return bad("ulimits names nofile twice")
		}
		seen = true
		if u.SoftLimit <= 0 || u.HardLimit <= 0 || u.SoftLimit > u.HardLimit {
			return bad("ulimits nofile: softLimit %d and hardLimit %d must be positive with softLimit <= hardLimit", u.SoftLimit, u.HardLimit)
		}
	}
	return nil
}

// containerNofile is the container's RLIMIT_NOFILE from its ulimits, or
// nil for the runtime's default.
func containerNofile(c *api.ContainerDefinition) *task.Rlimit {
	for _, u := range c.Ulimits {
		if u.Name == "nofile" {
			return &task.Rlimit{Soft: uint64(u.SoftLimit), Hard: uint64(u.HardLimit)}
		}
	}
	return nil
}

// validateSecrets checks a container's secrets: each names its variable
// once and comes from a Secrets Manager secret's ARN, or an SSM
// parameter's name or ARN. Whether the secret exists is known only when
// the task starts (its host's agent asks for the values).
func validateSecrets(list []api.Secret, bad func(string, ...any) error) error {
	seen := map[string]bool{}
	for i, sec := range list {
		name, from := deref(sec.Name), deref(sec.ValueFrom)
		switch {
		case name == "" || from == "":
			return bad("secrets[%d] needs a name (the environment variable) and a valueFrom (a Secrets Manager secret's ARN, or an SSM parameter's name or ARN)", i)
		case seen[name]:
			return bad("secrets name %s is given twice: each environment variable comes from one secret", name)
		case strings.HasPrefix(from, "arn:") && !strings.HasPrefix(from, "arn:aws:secretsmanager:") && !strings.HasPrefix(from, "arn:aws:ssm:"):
			return bad("secrets %s: valueFrom %s is neither a Secrets Manager secret's ARN (arn:aws:secretsmanager:...) nor an SSM parameter's (arn:aws:ssm:...)", name, from)
		}
		seen[name] = true
	}
	return nil
}
