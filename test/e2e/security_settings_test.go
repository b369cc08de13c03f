package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/testutil"
)

// restrictedPod has every setting of Pod Security Admission's
// "restricted" level, an emptyDir and an fsGroup; its namespace enforces
// that level, so the API server itself vouches for the pod.
const restrictedPod = `apiVersion: v1
kind: Pod
metadata: {name: restricted, namespace: strict, labels: {app: secure}}
spec:
  terminationGracePeriodSeconds: 2
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: main
    image: %s
    command: ["sh", "-c", "echo up; exec sleep 3600"]
    resources: {requests: {cpu: 250m, memory: 256Mi}}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes: [{name: scratch, emptyDir: {}}]
`

// rootPod runs the image's user (root) with runAsNonRoot.
const rootPod = `apiVersion: v1
kind: Pod
metadata: {name: rootful, namespace: default, labels: {app: secure}}
spec:
  terminationGracePeriodSeconds: 2
  securityContext: {runAsNonRoot: true}
  containers:
  - name: main
    image: %s
    command: ["sh", "-c", "echo up; exec sleep 3600"]
    resources: {requests: {cpu: 250m, memory: 256Mi}}
`

// TestKubernetesSecuritySettings: on runc, a pod of the restricted profile
// runs with exactly its settings (checked inside it), a root image with
// runAsNonRoot waits with the kubelet's CreateContainerConfigError, and
// settings a sandbox cannot honour are refused naming the field.
func TestKubernetesSecuritySettings(t *testing.T) {
	e := startBridge(t, "--runtimes", "sim,runc")
	e.kubectl("create", "namespace", "strict")
	e.kubectl("label", "namespace", "strict", "pod-security.kubernetes.io/enforce=restricted")
	e.profile("create", "secure", "--namespace", "strict", "--labels", "app=secure", "--wait")
	e.profile("create", "secure-default", "--namespace", "default", "--labels", "app=secure", "--wait")

	t.Run("RestrictedProfile", func(t *testing.T) {
		e.t = t
		if out, err := e.apply(fmt.Sprintf(restrictedPod, e.image)); err != nil {
			t.Fatalf("the restricted pod was refused: %v\n%s", err, out)
		}
		// The namespace does enforce the level: a plain pod is refused.
		if out, err := e.apply(fmt.Sprintf(simplePod, "plain", "strict", "secure", e.image, "250m")); err == nil ||
			!strings.Contains(out+err.Error(), "violates PodSecurity") {
			t.Fatalf("a pod without the restricted settings was not refused by Pod Security admission: %v\n%s", err, out)
		}
		e.waitRunning("strict", "restricted")
		exec := func(script string) (string, error) {
			return e.cluster.Kubectl("exec", "-n", "strict", "restricted", "--", "sh", "-c", script)
		}
		out, err := exec("id -u; id -g; id -G; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status")
		if err != nil {
			t.Fatalf("kubectl exec: %v\n%s", err, out)
		}
		t.Logf("inside the restricted pod:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		field := func(name string) string {
			for _, l := range lines {
				if v, ok := strings.CutPrefix(l, name+":"); ok {
					return strings.TrimSpace(v)
				}
			}
			return "missing"
		}
		if len(lines) < 3 || lines[0] != "1000" || lines[1] != "3000" {
			t.Errorf("uid/gid = %q, want 1000 and 3000", lines[:min(2, len(lines))])
		}
		if len(lines) >= 3 && !strings.Contains(" "+lines[2]+" ", " 2000 ") {
			t.Errorf("groups %q do not hold the fsGroup 2000", lines[2])
		}
		for name, want := range map[string]string{"CapEff": "0000000000000000", "CapPrm": "0000000000000000",
			"CapBnd": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"} {
			if got := field(name); got != want {
				t.Errorf("%s = %s, want %s", name, got, want)
			}
		}
		// /tmp of the image is world-writable: only a read-only root stops
		// uid 1000 writing there.
		if out, err := exec("echo x > /tmp/probe && echo wrote-root"); err == nil || strings.Contains(out, "wrote-root") ||
			!strings.Contains(out+err.Error(), "Read-only file system") {
			t.Errorf("writing to the root file system: %v %q, want Read-only file system", err, out)
		}
		out, err = exec("echo data > /scratch/f && cat /scratch/f && ls -ldn /scratch /scratch/f")
		if err != nil || !strings.HasPrefix(out, "data\n") {
			t.Fatalf("the emptyDir is not writable: %v\n%s", err, out)
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			// ls -ldn: mode links uid gid ...; the volume and what is
			// made in it belong to the fsGroup.
			f := strings.Fields(l)
			if len(f) < 4 || f[3] != "2000" {
				t.Errorf("not owned by the fsGroup 2000: %q", l)
			}
		}
	})

	t.Run("RootImageWithRunAsNonRoot", func(t *testing.T) {
		e.t = t
		if out, err := e.apply(fmt.Sprintf(rootPod, e.image)); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var state struct {
			Status struct {
				Phase             string `json:"phase"`
				ContainerStatuses []struct {
					State struct {
						Waiting *struct {
							Reason  string `json:"reason"`
							Message string `json:"message"`
						} `json:"waiting"`
						Running *struct{} `json:"running"`
					} `json:"state"`
				} `json:"containerStatuses"`
			} `json:"status"`
		}
		e.eventually(120*time.Second, "CreateContainerConfigError", func() (bool, string) {
			out := e.kubectl("get", "pod", "rootful", "-o", "json")
			if err := json.Unmarshal([]byte(out), &state); err != nil {
				return false, err.Error()
			}
			cs := state.Status.ContainerStatuses
			if len(cs) == 1 && cs[0].State.Running != nil {
				t.Fatalf("the root container with runAsNonRoot runs: %s", out)
			}
			return len(cs) == 1 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "CreateContainerConfigError",
				fmt.Sprintf("%+v", state.Status)
		})
		w := state.Status.ContainerStatuses[0].State.Waiting
		if !strings.Contains(w.Message, "container has runAsNonRoot and image will run as root") {
			t.Errorf("waiting message %q, want the kubelet's words", w.Message)
		}
		if state.Status.Phase != "Pending" {
			t.Errorf("phase %s, want Pending", state.Status.Phase)
		}
		// It stays so: the container is never started. The proof is the
		// task's record once the pod is gone, not a pause: a container that
		// ever ran has a runtime ID (and, stopped, an exit code).
		node := e.kubectl("get", "pod", "rootful", "-o", "jsonpath={.spec.nodeName}")
		taskID := e.kubectl("get", "node", node, "-o", `jsonpath={.metadata.annotations.vessel\.dev/task-id}`)
		if taskID == "" {
			t.Fatalf("node %q of the pod names no task", node)
		}
		e.kubectl("delete", "pod", "rootful", "--wait=false")
		ecsc := e.server.ecsClient()
		var stopped ecstypes.Task
		testutil.Eventually(t, 2*time.Minute, func() error {
			out, err := ecsc.DescribeTasks(t.Context(), &ecs.DescribeTasksInput{Tasks: []string{taskID}})
			if err != nil || len(out.Tasks) != 1 {
				return fmt.Errorf("describing task %s: %v %+v", taskID, err, out)
			}
			if stopped = out.Tasks[0]; aws.ToString(stopped.LastStatus) != "STOPPED" {
				return fmt.Errorf("task %s of the deleted pod is %s, want STOPPED", taskID, aws.ToString(stopped.LastStatus))
			}
			return nil
		})
		if len(stopped.Containers) != 1 {
			t.Fatalf("task %s has containers %+v, want the pod's one", taskID, stopped.Containers)
		}
		for _, c := range stopped.Containers {
			if c.RuntimeId != nil || c.ExitCode != nil {
				t.Errorf("container %s ran (runtime ID %q, exit code %v): runAsNonRoot with a root image must never start", aws.ToString(c.Name),
					aws.ToString(c.RuntimeId), c.ExitCode)
			}
		}
	})

	t.Run("RefusedSettings", func(t *testing.T) {
		e.t = t
		for _, tc := range []struct {
			name, securityContext string
			want                  []string
		}{
			{"unconfined", "{seccompProfile: {type: Unconfined}}", []string{"seccompProfile.type Unconfined is not supported", "RuntimeDefault"}},
			// The API server takes Unmasked only with hostUsers false.
			{"unmasked", "{procMount: Unmasked}", []string{"procMount Unmasked is not supported", "spec.hostUsers false is not supported"}},
			{"netadmin", "{capabilities: {add: [NET_ADMIN]}}", []string{"Capabilities added: NET_ADMIN"}},
			{"escalation", "{allowPrivilegeEscalation: true}", []string{"allowPrivilegeEscalation true is not supported"}},
		} {
			manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default, labels: {app: secure}}
spec:
  hostUsers: %t
  containers:
  - {name: main, image: %s, command: ["sleep", "60"], securityContext: %s}
`, tc.name, tc.name != "unmasked", e.image, tc.securityContext)
			out, err := e.apply(manifest)
			if err == nil {
				t.Errorf("pod %s (%s) was admitted", tc.name, tc.securityContext)
				continue
			}
			out += err.Error()
			for _, w := range append(tc.want, "Pod not supported on Fargate") {
				if !strings.Contains(out, w) {
					t.Errorf("pod %s refused without %q:\n%s", tc.name, w, out)
					break
				}
			}
		}
	})
}

// TestECSSecuritySettings runs, on runc, a task definition with a
// read-only root, capabilities dropped but SYS_PTRACE, an init, user 1000
// and a volume two containers share; its output shows each setting.
func TestECSSecuritySettings(t *testing.T) {
	s := startRuncServer(t)
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	c := s.ecsClient()
	ctx := context.Background()
	// /tmp of the image is world-writable: only a read-only root stops uid
	// 1000 writing there. A uid other than 0 keeps no effective
	// capability (as with Docker), but its bounding set is what was asked.
	writer := `echo uid=$(id -u); grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
echo pid1=$(cat /proc/1/comm) self=$$
if echo x > /tmp/probe; then echo root=writable; else echo root=readonly; fi
echo "from the writer" > /shared/msg && echo wrote
echo nofile=$(ulimit -Sn)/$(ulimit -Hn)`
	reader := `cat /shared/msg; echo "reader $(grep -E '^CapEff:' /proc/self/status)"
if echo y > /shared/other; then echo volume=writable; else echo volume=readonly; fi`
	_, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String("secure"),
		Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		Volumes: []ecstypes.Volume{{Name: aws.String("shared"), Host: &ecstypes.HostVolumeProperties{}}},
		ContainerDefinitions: []ecstypes.ContainerDefinition{
			{Name: aws.String("writer"), Image: aws.String(img), Essential: aws.Bool(false), StopTimeout: aws.Int32(2),
				EntryPoint: []string{"sh", "-c", writer}, User: aws.String("1000"), ReadonlyRootFilesystem: aws.Bool(true),
				LinuxParameters: &ecstypes.LinuxParameters{InitProcessEnabled: aws.Bool(true),
					Capabilities: &ecstypes.KernelCapabilities{Drop: []string{"ALL"}, Add: []string{"SYS_PTRACE"}}},
				MountPoints: []ecstypes.MountPoint{{SourceVolume: aws.String("shared"), ContainerPath: aws.String("/shared")}},
				Ulimits:     []ecstypes.Ulimit{{Name: ecstypes.UlimitNameNofile, SoftLimit: 2048, HardLimit: 4096}}},
			// root, with the same capabilities: SYS_PTRACE is effective.
			{Name: aws.String("reader"), Image: aws.String(img), StopTimeout: aws.Int32(2), EntryPoint: []string{"sh", "-c", reader},
				LinuxParameters: &ecstypes.LinuxParameters{
					Capabilities: &ecstypes.KernelCapabilities{Drop: []string{"ALL"}, Add: []string{"SYS_PTRACE"}}},
				DependsOn: []ecstypes.ContainerDependency{{ContainerName: aws.String("writer"), Condition: ecstypes.ContainerConditionSuccess}},
				MountPoints: []ecstypes.MountPoint{{SourceVolume: aws.String("shared"), ContainerPath: aws.String("/shared"),
					ReadOnly: aws.Bool(true)}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	arn := runOne(t, c, "secure")
	st := waitFor(t, c, arn, "STOPPED", 120*time.Second)
	out, _, _ := s.vessel("logs", arn)
	t.Logf("the task's output:\n%s\nstopped: %s", out, aws.ToString(st.StoppedReason))
	for _, want := range []string{
		"uid=1000",
		"CapEff:\t0000000000000000",
		"CapBnd:\t0000000000080000", // CAP_SYS_PTRACE (bit 19) alone
		"NoNewPrivs:\t1",
		"Seccomp:\t2",
		"root=readonly",
		"Read-only file system",
		"wrote",
		"from the writer",
		"reader CapEff:\t0000000000080000",
		"volume=readonly",
		"nofile=2048/4096",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	// With initProcessEnabled the init is PID 1, not the container's shell.
	if strings.Contains(out, "self=1\n") || strings.Contains(out, "pid1=sh") {
		t.Errorf("the shell is PID 1: no init ran")
	}
	for _, ct := range st.Containers {
		if code := ct.ExitCode; code == nil || *code != 0 {
			t.Errorf("container %s exited with %s, want 0", aws.ToString(ct.Name), exitCode(code))
		}
	}

	// What a sandbox cannot honour is refused, naming the field.
	_, err = c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String("refused"),
		Cpu: aws.String("256"), Memory: aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
			DockerSecurityOptions: []string{"seccomp=unconfined"}}}})
	if err == nil || !strings.Contains(err.Error(), "dockerSecurityOptions") {
		t.Errorf("dockerSecurityOptions: %v, want a ClientException naming the field", err)
	}
}

func exitCode(c *int32) string {
	if c == nil {
		return "no exit code"
	}
	return fmt.Sprint(*c)
}
