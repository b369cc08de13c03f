package server_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/task"
)

// storedTask reads the task the control plane resolved for arn.
func (e *env) storedTask(arn string) task.Task {
	e.t.Helper()
	kv, err := e.st.Get(ctx(e.t), "tasks/"+arn[strings.LastIndex(arn, "/")+1:])
	if err != nil {
		e.t.Fatal(err)
	}
	var tk task.Task
	if err := json.Unmarshal(kv.Value, &tk); err != nil {
		e.t.Fatal(err)
	}
	return tk
}

func TestTaskDefinitionSecurityAndVolumesHonoured(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	out, err := e.ecs.RegisterTaskDefinition(c, &ecs.RegisterTaskDefinitionInput{
		Family: aws.String("secure"), Cpu: aws.String("256"), Memory: aws.String("512"),
		NetworkMode: ecstypes.NetworkModeAwsvpc,
		Volumes: []ecstypes.Volume{{Name: aws.String("shared")},
			{Name: aws.String("bind"), Host: &ecstypes.HostVolumeProperties{}}},
		ContainerDefinitions: []ecstypes.ContainerDefinition{
			{Name: aws.String("writer"), Image: aws.String("busybox"), User: aws.String("1000"),
				ReadonlyRootFilesystem: aws.Bool(true),
				LinuxParameters: &ecstypes.LinuxParameters{InitProcessEnabled: aws.Bool(true),
					Capabilities: &ecstypes.KernelCapabilities{Add: []string{"CAP_SYS_PTRACE"}, Drop: []string{"ALL"}}},
				MountPoints: []ecstypes.MountPoint{{SourceVolume: aws.String("shared"), ContainerPath: aws.String("/data")},
					{SourceVolume: aws.String("bind"), ContainerPath: aws.String("/scratch"), ReadOnly: aws.Bool(true)}},
				LogConfiguration: &ecstypes.LogConfiguration{LogDriver: ecstypes.LogDriverAwslogs,
					Options: map[string]string{"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "secure"}},
				DockerLabels: map[string]string{"team": "blue"},
				Ulimits:      []ecstypes.Ulimit{{Name: ecstypes.UlimitNameNofile, SoftLimit: 4096, HardLimit: 8192}}},
			{Name: aws.String("reader"), Image: aws.String("busybox"),
				VolumesFrom: []ecstypes.VolumeFrom{{SourceContainer: aws.String("writer"), ReadOnly: aws.Bool(true)}}},
			{Name: aws.String("plain"), Image: aws.String("busybox"),
				LinuxParameters: &ecstypes.LinuxParameters{InitProcessEnabled: aws.Bool(false)}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tk := e.storedTask(e.run(*out.TaskDefinition.TaskDefinitionArn))
	if n := tk.Container("writer").Nofile; n == nil || *n != (task.Rlimit{Soft: 4096, Hard: 8192}) {
		t.Errorf("writer's nofile = %+v, want 4096/8192 from its ulimits", n)
	}
	if n := tk.Container("reader").Nofile; n != nil {
		t.Errorf("reader's nofile = %+v, want the runtime's default", n)
	}
	wantVols := []task.Volume{{Name: "shared", EmptyDir: &task.EmptyDir{}}, {Name: "bind", EmptyDir: &task.EmptyDir{}}}
	if !reflect.DeepEqual(tk.Volumes, wantVols) {
		t.Errorf("volumes = %+v, want %+v", tk.Volumes, wantVols)
	}
	w, r, p := tk.Containers[0], tk.Containers[1], tk.Containers[2]
	wantSec := &task.Security{ReadOnlyRootFilesystem: true, InitProcess: true, CapAdd: []string{"SYS_PTRACE"}, CapDrop: []string{"ALL"}}
	if !reflect.DeepEqual(w.Security, wantSec) || w.User != "1000" {
		t.Errorf("writer: security %+v user %q, want %+v and 1000", w.Security, w.User, wantSec)
	}
	if got := w.Security.Capabilities(); !reflect.DeepEqual(got, []string{"CAP_SYS_PTRACE"}) {
		t.Errorf("writer's capabilities = %v, want [CAP_SYS_PTRACE]", got)
	}
	wantW := []task.MountPoint{{SourceVolume: "shared", ContainerPath: "/data"}, {SourceVolume: "bind", ContainerPath: "/scratch", ReadOnly: true}}
	if !reflect.DeepEqual(w.MountPoints, wantW) {
		t.Errorf("writer mounts = %+v", w.MountPoints)
	}
	wantR := []task.MountPoint{{SourceVolume: "shared", ContainerPath: "/data", ReadOnly: true}, {SourceVolume: "bind", ContainerPath: "/scratch", ReadOnly: true}}
	if !reflect.DeepEqual(r.MountPoints, wantR) {
		t.Errorf("reader mounts (volumesFrom writer, readOnly) = %+v", r.MountPoints)
	}
	if r.Security != nil || p.Security != nil || p.MountPoints != nil {
		t.Errorf("containers that ask for nothing get the default sandbox: %+v %+v %+v", r.Security, p.Security, p.MountPoints)
	}
}

func TestTaskDefinitionFieldsRefused(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	base := func() *ecs.RegisterTaskDefinitionInput {
		return &ecs.RegisterTaskDefinitionInput{Family: aws.String("f"), Cpu: aws.String("256"), Memory: aws.String("512"),
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox")},
				{Name: aws.String("side"), Image: aws.String("busybox")}}}
	}
	app := func(f func(*ecstypes.ContainerDefinition)) func(*ecs.RegisterTaskDefinitionInput) {
		return func(i *ecs.RegisterTaskDefinitionInput) { f(&i.ContainerDefinitions[0]) }
	}
	awslogs := func(opts map[string]string) func(*ecs.RegisterTaskDefinitionInput) {
		return app(func(c *ecstypes.ContainerDefinition) {
			c.LogConfiguration = &ecstypes.LogConfiguration{LogDriver: ecstypes.LogDriverAwslogs, Options: opts}
		})
	}
	lp := func(l ecstypes.LinuxParameters) func(*ecs.RegisterTaskDefinitionInput) {
		return app(func(c *ecstypes.ContainerDefinition) { c.LinuxParameters = &l })
	}
	cases := []struct {
		name   string
		mutate func(*ecs.RegisterTaskDefinitionInput)
		parts  []string
	}{
		{"capability added", lp(ecstypes.LinuxParameters{Capabilities: &ecstypes.KernelCapabilities{Add: []string{"NET_ADMIN"}}}),
			[]string{`container "app"`, "capabilities.add", "NET_ADMIN", "SYS_PTRACE"}},
		{"unknown capability dropped", lp(ecstypes.LinuxParameters{Capabilities: &ecstypes.KernelCapabilities{Drop: []string{"FLY"}}}),
			[]string{"capabilities.drop", "FLY"}},
		{"sharedMemorySize", lp(ecstypes.LinuxParameters{SharedMemorySize: aws.Int32(64)}), []string{"linuxParameters.sharedMemorySize"}},
		{"tmpfs", lp(ecstypes.LinuxParameters{Tmpfs: []ecstypes.Tmpfs{{ContainerPath: aws.String("/t"), Size: 8}}}),
			[]string{"linuxParameters.tmpfs"}},
		{"maxSwap", lp(ecstypes.LinuxParameters{MaxSwap: aws.Int32(0)}), []string{"linuxParameters.maxSwap"}},
		{"swappiness", lp(ecstypes.LinuxParameters{Swappiness: aws.Int32(0)}), []string{"linuxParameters.swappiness"}},
		{"devices", lp(ecstypes.LinuxParameters{Devices: []ecstypes.Device{{HostPath: aws.String("/dev/kvm")}}}),
			[]string{"linuxParameters.devices"}},
		{"dockerSecurityOptions", app(func(c *ecstypes.ContainerDefinition) { c.DockerSecurityOptions = []string{"seccomp=unconfined"} }),
			[]string{"dockerSecurityOptions"}},
		{"hostname", app(func(c *ecstypes.ContainerDefinition) { c.Hostname = aws.String("h") }), []string{"hostname", "awsvpc"}},
		{"extraHosts", app(func(c *ecstypes.ContainerDefinition) {
			c.ExtraHosts = []ecstypes.HostEntry{{Hostname: aws.String("a"), IpAddress: aws.String("10.0.0.1")}}
		}), []string{"extraHosts", "awsvpc"}},
		{"dnsServers", app(func(c *ecstypes.ContainerDefinition) { c.DnsServers = []string{"8.8.8.8"} }), []string{"dnsServers", "awsvpc"}},
		{"dnsSearchDomains", app(func(c *ecstypes.ContainerDefinition) { c.DnsSearchDomains = []string{"x"} }), []string{"dnsSearchDomains"}},
		{"disableNetworking", app(func(c *ecstypes.ContainerDefinition) { c.DisableNetworking = aws.Bool(true) }), []string{"disableNetworking"}},
		{"pseudoTerminal", app(func(c *ecstypes.ContainerDefinition) { c.PseudoTerminal = aws.Bool(true) }), []string{"pseudoTerminal"}},
		{"interactive", app(func(c *ecstypes.ContainerDefinition) { c.Interactive = aws.Bool(true) }), []string{"interactive"}},
		{"ulimits other than nofile", app(func(c *ecstypes.ContainerDefinition) {
			c.Ulimits = []ecstypes.Ulimit{{Name: ecstypes.UlimitNameCore, SoftLimit: 1, HardLimit: 1}}
		}), []string{"ulimits", "core", "nofile"}},
		{"ulimits nofile soft above hard", app(func(c *ecstypes.ContainerDefinition) {
			c.Ulimits = []ecstypes.Ulimit{{Name: ecstypes.UlimitNameNofile, SoftLimit: 2048, HardLimit: 1024}}
		}), []string{"ulimits nofile", "softLimit"}},
		{"systemControls", app(func(c *ecstypes.ContainerDefinition) {
			c.SystemControls = []ecstypes.SystemControl{{Namespace: aws.String("net.core.somaxconn"), Value: aws.String("1")}}
		}), []string{"systemControls"}},
		{"startTimeout", app(func(c *ecstypes.ContainerDefinition) { c.StartTimeout = aws.Int32(10) }), []string{"startTimeout"}},
		{"environmentFiles", app(func(c *ecstypes.ContainerDefinition) {
			c.EnvironmentFiles = []ecstypes.EnvironmentFile{{Type: ecstypes.EnvironmentFileTypeS3, Value: aws.String("arn:aws:s3:::b/e.env")}}
		}), []string{"environmentFiles"}},
		{"secret without valueFrom", app(func(c *ecstypes.ContainerDefinition) {
			c.Secrets = []ecstypes.Secret{{Name: aws.String("PW"), ValueFrom: aws.String("")}}
		}), []string{"secrets[0] needs a name", "valueFrom"}},
		{"secret named twice", app(func(c *ecstypes.ContainerDefinition) {
			c.Secrets = []ecstypes.Secret{{Name: aws.String("PW"), ValueFrom: aws.String("/a")}, {Name: aws.String("PW"), ValueFrom: aws.String("/b")}}
		}), []string{"secrets name PW is given twice"}},
		{"secret from another service", app(func(c *ecstypes.ContainerDefinition) {
			c.Secrets = []ecstypes.Secret{{Name: aws.String("PW"), ValueFrom: aws.String("arn:aws:s3:::bucket/pw")}}
		}), []string{"neither a Secrets Manager secret's ARN", "arn:aws:ssm:"}},
		{"firelens", app(func(c *ecstypes.ContainerDefinition) {
			c.FirelensConfiguration = &ecstypes.FirelensConfiguration{Type: ecstypes.FirelensConfigurationTypeFluentbit}
		}), []string{"firelensConfiguration"}},
		{"log driver other than awslogs", app(func(c *ecstypes.ContainerDefinition) {
			c.LogConfiguration = &ecstypes.LogConfiguration{LogDriver: ecstypes.LogDriverSplunk}
		}), []string{"logConfiguration.logDriver", "splunk", "awslogs"}},
		{"awslogs without a group", awslogs(map[string]string{"awslogs-region": "us-east-1", "awslogs-stream-prefix": "p"}),
			[]string{"awslogs-group is required"}},
		{"awslogs without a stream prefix", awslogs(map[string]string{"awslogs-group": "g", "awslogs-region": "us-east-1"}),
			[]string{"awslogs-stream-prefix is required", "prefix/container-name/task-id"}},
		{"awslogs with a bad region", awslogs(map[string]string{"awslogs-group": "g", "awslogs-region": "mars", "awslogs-stream-prefix": "p"}),
			[]string{"awslogs-region", "mars", "us-east-1"}},
		{"awslogs with an unknown option", awslogs(map[string]string{"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p", "awslogs-endpoint": "x"}),
			[]string{"awslogs-endpoint", "accepted options"}},
		{"awslogs with both multi-line options", awslogs(map[string]string{"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p",
			"awslogs-datetime-format": "%Y", "awslogs-multiline-pattern": "^x"}), []string{"cannot both be set"}},
		{"awslogs with a bad multi-line pattern", awslogs(map[string]string{"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p",
			"awslogs-multiline-pattern": "(["}), []string{"awslogs-multiline-pattern", "regular expression"}},
		{"awslogs with a bad datetime format", awslogs(map[string]string{"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p",
			"awslogs-datetime-format": "%Q"}), []string{"awslogs-datetime-format", "%Q", "%Y"}},
		{"awslogs with a bad mode", awslogs(map[string]string{"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p",
			"mode": "lossy"}), []string{"mode", "blocking, non-blocking"}},
		{"awslogs buffer size in blocking mode", awslogs(map[string]string{"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p",
			"max-buffer-size": "4m"}), []string{"max-buffer-size", "non-blocking"}},
		{"awslogs with a bad buffer size", awslogs(map[string]string{"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p",
			"mode": "non-blocking", "max-buffer-size": "lots"}), []string{"max-buffer-size", "25m"}},
		{"awslogs create-group not a boolean", awslogs(map[string]string{"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p",
			"awslogs-create-group": "yes"}), []string{"awslogs-create-group", "true, false"}},
		{"restartPolicy", app(func(c *ecstypes.ContainerDefinition) {
			c.RestartPolicy = &ecstypes.ContainerRestartPolicy{Enabled: aws.Bool(true)}
		}), []string{"restartPolicy"}},
		{"credentialSpecs", app(func(c *ecstypes.ContainerDefinition) { c.CredentialSpecs = []string{"credentialspec:x"} }),
			[]string{"credentialSpecs"}},
		{"versionConsistency enabled", app(func(c *ecstypes.ContainerDefinition) {
			c.VersionConsistency = ecstypes.VersionConsistencyEnabled
		}), []string{"versionConsistency"}},
		{"ipcMode", func(i *ecs.RegisterTaskDefinitionInput) { i.IpcMode = ecstypes.IpcModeTask }, []string{"ipcMode"}},
		{"pidMode task", func(i *ecs.RegisterTaskDefinitionInput) { i.PidMode = ecstypes.PidModeTask }, []string{"pidMode"}},
		{"pidMode host", func(i *ecs.RegisterTaskDefinitionInput) { i.PidMode = ecstypes.PidModeHost }, []string{"pidMode"}},
		{"placementConstraints", func(i *ecs.RegisterTaskDefinitionInput) {
			i.PlacementConstraints = []ecstypes.TaskDefinitionPlacementConstraint{{Type: ecstypes.TaskDefinitionPlacementConstraintTypeMemberOf,
				Expression: aws.String("attribute:x == y")}}
		}, []string{"placementConstraints"}},
		{"proxyConfiguration", func(i *ecs.RegisterTaskDefinitionInput) {
			i.ProxyConfiguration = &ecstypes.ProxyConfiguration{ContainerName: aws.String("app")}
		}, []string{"proxyConfiguration"}},
		{"Windows", func(i *ecs.RegisterTaskDefinitionInput) {
			i.RuntimePlatform = &ecstypes.RuntimePlatform{OperatingSystemFamily: ecstypes.OSFamilyWindowsServer2022Core}
		}, []string{"runtimePlatform.operatingSystemFamily", "LINUX"}},
		{"efs volume", func(i *ecs.RegisterTaskDefinitionInput) {
			i.Volumes = []ecstypes.Volume{{Name: aws.String("v"), EfsVolumeConfiguration: &ecstypes.EFSVolumeConfiguration{FileSystemId: aws.String("fs-1")}}}
		}, []string{`volume "v"`, "efsVolumeConfiguration"}},
		{"volume declared twice", func(i *ecs.RegisterTaskDefinitionInput) {
			i.Volumes = []ecstypes.Volume{{Name: aws.String("v")}, {Name: aws.String("v")}}
		}, []string{`volume "v" is declared twice`}},
		{"mount of an undeclared volume", app(func(c *ecstypes.ContainerDefinition) {
			c.MountPoints = []ecstypes.MountPoint{{SourceVolume: aws.String("nope"), ContainerPath: aws.String("/d")}}
		}), []string{"mountPoints", "nope"}},
		{"relative containerPath", func(i *ecs.RegisterTaskDefinitionInput) {
			i.Volumes = []ecstypes.Volume{{Name: aws.String("v")}}
			i.ContainerDefinitions[0].MountPoints = []ecstypes.MountPoint{{SourceVolume: aws.String("v"), ContainerPath: aws.String("data")}}
		}, []string{`container "app"`, `containerPath "data"`}},
		{"volumesFrom unknown container", app(func(c *ecstypes.ContainerDefinition) {
			c.VolumesFrom = []ecstypes.VolumeFrom{{SourceContainer: aws.String("ghost")}}
		}), []string{"volumesFrom", "ghost"}},
		{"volumesFrom cycle", func(i *ecs.RegisterTaskDefinitionInput) {
			i.ContainerDefinitions[0].VolumesFrom = []ecstypes.VolumeFrom{{SourceContainer: aws.String("side")}}
			i.ContainerDefinitions[1].VolumesFrom = []ecstypes.VolumeFrom{{SourceContainer: aws.String("app")}}
		}, []string{"volumesFrom makes a cycle"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.mutate(in)
			_, err := e.ecs.RegisterTaskDefinition(c, in)
			wantAPIError(t, err, "ClientException", tc.parts...)
		})
	}
}

func TestRunTaskOverridesRefused(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	def := e.register("ov", "256", "512")
	cases := []struct {
		name  string
		ov    ecstypes.TaskOverride
		code  string
		parts []string
	}{
		{"environmentFiles", ecstypes.TaskOverride{ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String("app"),
			EnvironmentFiles: []ecstypes.EnvironmentFile{{Type: ecstypes.EnvironmentFileTypeS3, Value: aws.String("arn:aws:s3:::b/e")}}}}},
			"ClientException", []string{"containerOverrides[app].environmentFiles"}},
		{"GPU", ecstypes.TaskOverride{ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String("app"),
			ResourceRequirements: []ecstypes.ResourceRequirement{{Type: ecstypes.ResourceTypeGpu, Value: aws.String("1")}}}}},
			"ClientException", []string{"containerOverrides[app].resourceRequirements", "GPU"}},
		{"inference accelerators", ecstypes.TaskOverride{InferenceAcceleratorOverrides: []ecstypes.InferenceAcceleratorOverride{
			{DeviceName: aws.String("d"), DeviceType: aws.String("eia2.medium")}}},
			"ClientException", []string{"inferenceAcceleratorOverrides"}},
		{"memoryReservation above memory", ecstypes.TaskOverride{ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String("app"),
			Memory: aws.Int32(128), MemoryReservation: aws.Int32(256)}}},
			"InvalidParameterException", []string{"memoryReservation 256"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ov := tc.ov
			_, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), Overrides: &ov})
			wantAPIError(t, err, tc.code, tc.parts...)
		})
	}
}
