package vnode

import (
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"vessel.dev/vessel/internal/task"
)

func code(n int) *int { return &n }

func cond(st corev1.PodStatus, typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// stateOf summarises a container state: "waiting:<reason>", "running",
// "terminated:<code>:<reason>".
func stateOf(cs corev1.ContainerStatus) string {
	switch s := cs.State; {
	case s.Waiting != nil:
		return "waiting:" + s.Waiting.Reason
	case s.Running != nil:
		return "running"
	case s.Terminated != nil:
		return "terminated:" + itoa(s.Terminated.ExitCode) + ":" + s.Terminated.Reason
	}
	return "none"
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

func TestPodStatusFor(t *testing.T) {
	withInit := func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
	}
	tests := []struct {
		name      string
		status    task.Status
		mod       func(*task.Task)
		podMod    func(*corev1.Pod)
		phase     corev1.PodPhase
		app       string // stateOf the app container
		appReady  bool
		init      string // stateOf the init container, "" = none
		ready     corev1.ConditionStatus
		initiated corev1.ConditionStatus
	}{
		{name: "provisioning", status: task.StatusProvisioning, phase: corev1.PodPending,
			app: "waiting:ContainerCreating", ready: "False", initiated: "True"},
		{name: "pending", status: task.StatusPending, phase: corev1.PodPending,
			app: "waiting:ContainerCreating", ready: "False", initiated: "True"},
		{name: "activating", status: task.StatusActivating, phase: corev1.PodPending,
			app: "waiting:ContainerCreating", ready: "False", initiated: "True"},
		{name: "running", status: task.StatusRunning, phase: corev1.PodRunning, app: "running", appReady: true,
			ready: "True", initiated: "True"},
		{name: "running, container status from the agent", status: task.StatusRunning,
			mod: func(t *task.Task) { t.Containers[0].LastStatus = task.StatusPending }, phase: corev1.PodRunning,
			app: "waiting:ContainerCreating", ready: "False", initiated: "True"},
		{name: "running but unhealthy", status: task.StatusRunning,
			mod: func(t *task.Task) {
				t.Containers[0].HealthCheck = &task.HealthCheck{Command: []string{"CMD", "true"}}
				t.Containers[0].HealthStatus = task.HealthUnknown
			}, phase: corev1.PodRunning, app: "running", ready: "False", initiated: "True"},
		{name: "running and healthy", status: task.StatusRunning,
			mod: func(t *task.Task) {
				t.Containers[0].HealthCheck = &task.HealthCheck{Command: []string{"CMD", "true"}}
				t.Containers[0].HealthStatus = task.HealthHealthy
			}, phase: corev1.PodRunning, app: "running", appReady: true, ready: "True", initiated: "True"},
		{name: "readiness gate not met", status: task.StatusRunning,
			podMod: func(p *corev1.Pod) { p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "lb/ready"}} },
			phase:  corev1.PodRunning, app: "running", appReady: true, ready: "False", initiated: "True"},
		{name: "readiness gate met", status: task.StatusRunning,
			podMod: func(p *corev1.Pod) {
				p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "lb/ready"}}
				p.Status.Conditions = []corev1.PodCondition{{Type: "lb/ready", Status: corev1.ConditionTrue}}
			},
			phase: corev1.PodRunning, app: "running", appReady: true, ready: "True", initiated: "True"},
		{name: "stopping, still running", status: task.StatusStopping, phase: corev1.PodRunning, app: "running",
			appReady: true, ready: "True", initiated: "True"},
		{name: "deprovisioning, app exited 0", status: task.StatusDeprovisioning,
			mod: func(t *task.Task) { t.Containers[0].ExitCode = code(0) }, phase: corev1.PodSucceeded,
			app: "terminated:0:Completed", ready: "False", initiated: "True"},
		{name: "stopped, exit 0", status: task.StatusStopped,
			mod: func(t *task.Task) { t.Containers[0].ExitCode = code(0) }, phase: corev1.PodSucceeded,
			app: "terminated:0:Completed", ready: "False", initiated: "True"},
		{name: "stopped, exit 1", status: task.StatusStopped,
			mod: func(t *task.Task) { t.Containers[0].ExitCode = code(1) }, phase: corev1.PodFailed,
			app: "terminated:1:Error", ready: "False", initiated: "True"},
		{name: "stopped, OOM", status: task.StatusStopped,
			mod: func(t *task.Task) {
				t.Containers[0].ExitCode, t.Containers[0].Reason = code(137), "OutOfMemoryError: container killed"
			}, phase: corev1.PodFailed, app: "terminated:137:OOMKilled", ready: "False", initiated: "True"},
		{name: "stopped, OnFailure, exit 0", status: task.StatusStopped,
			mod:    func(t *task.Task) { t.Containers[0].ExitCode = code(0) },
			podMod: func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure },
			phase:  corev1.PodSucceeded, app: "terminated:0:Completed", ready: "False", initiated: "True"},
		{name: "stopped before starting", status: task.StatusStopped,
			mod: func(t *task.Task) {
				t.StopCode, t.StoppedReason = task.StopCodeTaskFailedToStart, "CannotPullContainerError: not found"
			}, phase: corev1.PodFailed, app: "terminated:137:ContainerStatusUnknown", ready: "False", initiated: "True"},
		{name: "task lacks the container", status: task.StatusRunning, mod: func(t *task.Task) { t.Containers = nil },
			phase: corev1.PodRunning, app: "waiting:ContainerCreating", ready: "False", initiated: "True"},
		{name: "container refused for its configuration", status: task.StatusRunning,
			mod: func(t *task.Task) {
				t.Containers[0].Reason = "CreateContainerConfigError: container has runAsNonRoot and image will run as root"
			}, phase: corev1.PodPending, app: "waiting:CreateContainerConfigError", ready: "False", initiated: "True"},
		{name: "init container refused for its configuration", status: task.StatusRunning, podMod: withInit,
			mod: func(t *task.Task) {
				t.Containers = []task.Container{{Name: "init", Reason: "CreateContainerConfigError: container has runAsNonRoot and image will run as root"},
					{Name: "app", LastStatus: task.StatusPending}}
			}, phase: corev1.PodPending, init: "waiting:CreateContainerConfigError", app: "waiting:PodInitializing", ready: "False", initiated: "False"},
		{name: "refused container of a stopped pod", status: task.StatusStopped,
			mod: func(t *task.Task) {
				t.Containers[0].Reason = "CreateContainerConfigError: container has runAsNonRoot and image will run as root"
			}, phase: corev1.PodFailed, app: "terminated:137:ContainerStatusUnknown", ready: "False", initiated: "True"},
		{name: "init container running", status: task.StatusRunning, podMod: withInit,
			mod: func(t *task.Task) {
				t.Containers = []task.Container{{Name: "init", LastStatus: task.StatusRunning}, {Name: "app", LastStatus: task.StatusPending}}
			}, phase: corev1.PodRunning, init: "running", app: "waiting:PodInitializing", ready: "False", initiated: "False"},
		{name: "init container done", status: task.StatusRunning, podMod: withInit,
			mod: func(t *task.Task) {
				t.Containers = []task.Container{{Name: "init", ExitCode: code(0)}, {Name: "app"}}
			}, phase: corev1.PodRunning, init: "terminated:0:Completed", app: "running", appReady: true, ready: "True", initiated: "True"},
		{name: "init container failed", status: task.StatusStopped, podMod: withInit,
			mod: func(t *task.Task) {
				t.Containers = []task.Container{{Name: "init", ExitCode: code(2)}, {Name: "app"}}
			}, phase: corev1.PodFailed, init: "terminated:2:Error", app: "terminated:137:ContainerStatusUnknown", ready: "False", initiated: "False"},
		{name: "pending with init", status: task.StatusActivating, podMod: withInit, phase: corev1.PodPending,
			mod:  func(t *task.Task) { t.Containers = []task.Container{{Name: "init"}, {Name: "app"}} },
			init: "waiting:ContainerCreating", app: "waiting:PodInitializing", ready: "False", initiated: "False"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := testTask(tt.status)
			tk.IP = "10.0.1.23"
			tk.StartedAt = t0.Add(10e9)
			if tt.mod != nil {
				tt.mod(tk)
			}
			pod := testPod()
			if tt.podMod != nil {
				tt.podMod(pod)
			}
			st := PodStatusFor(tk, pod)
			if st.Phase != tt.phase {
				t.Errorf("phase = %s, want %s", st.Phase, tt.phase)
			}
			if len(st.ContainerStatuses) != 1 {
				t.Fatalf("container statuses = %+v", st.ContainerStatuses)
			}
			app := st.ContainerStatuses[0]
			if got := stateOf(app); got != tt.app {
				t.Errorf("app state = %s, want %s", got, tt.app)
			}
			if app.Ready != tt.appReady || app.RestartCount != 0 || app.Name != "app" || app.Image != pod.Spec.Containers[0].Image {
				t.Errorf("app status = %+v, want ready %v", app, tt.appReady)
			}
			if tt.init != "" {
				if len(st.InitContainerStatuses) != 1 || stateOf(st.InitContainerStatuses[0]) != tt.init {
					t.Errorf("init statuses = %+v, want %s", st.InitContainerStatuses, tt.init)
				}
			} else if len(st.InitContainerStatuses) != 0 {
				t.Errorf("init statuses = %+v", st.InitContainerStatuses)
			}
			if got := cond(st, corev1.PodReady); got != tt.ready {
				t.Errorf("Ready = %s, want %s", got, tt.ready)
			}
			if got := cond(st, corev1.ContainersReady); tt.ready == "True" && got != "True" {
				t.Errorf("ContainersReady = %s", got)
			}
			if got := cond(st, corev1.PodInitialized); got != tt.initiated {
				t.Errorf("Initialized = %s, want %s", got, tt.initiated)
			}
			if got := cond(st, corev1.PodScheduled); got != "True" {
				t.Errorf("PodScheduled = %s", got)
			}
			if st.PodIP != "10.0.1.23" || st.HostIP != "10.0.1.23" || len(st.PodIPs) != 1 || len(st.HostIPs) != 1 {
				t.Errorf("IPs = %s %s %v %v", st.PodIP, st.HostIP, st.PodIPs, st.HostIPs)
			}
			if st.StartTime == nil || !st.StartTime.Time.Equal(t0) || st.QOSClass != corev1.PodQOSBurstable {
				t.Errorf("startTime %v qos %s", st.StartTime, st.QOSClass)
			}
		})
	}
}

func TestPodStatusDetails(t *testing.T) {
	tk := testTask(task.StatusStopped)
	tk.StopCode, tk.StoppedReason = task.StopCodeEssentialContainerExited, "Essential container in task exited"
	tk.ExecutionStoppedAt = t0.Add(60e9)
	tk.Containers[0].ExitCode = code(3)
	tk.Containers[0].ImageDigest = "sha256:abc"
	tk.Containers[0].RuntimeID = "rt-1"
	pod := testPod()
	old := metav1.NewTime(t0.Add(-time1h))
	pod.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: old},
		{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue},
	}
	st := PodStatusFor(tk, pod)
	cs := st.ContainerStatuses[0]
	if cs.ImageID != "docker.io/library/nginx@sha256:abc" || cs.ContainerID != "vessel://rt-1" {
		t.Errorf("ids = %q %q", cs.ImageID, cs.ContainerID)
	}
	if term := cs.State.Terminated; term == nil || !term.FinishedAt.Time.Equal(t0.Add(60e9)) {
		t.Errorf("terminated = %+v", cs.State.Terminated)
	}
	if st.Reason != task.StopCodeEssentialContainerExited || st.Message != tk.StoppedReason {
		t.Errorf("reason %q message %q", st.Reason, st.Message)
	}
	if c := findCondition(st.Conditions, corev1.PodScheduled); c == nil || !c.LastTransitionTime.Equal(&old) {
		t.Errorf("PodScheduled transition time not kept: %+v", c)
	}
	if c := findCondition(st.Conditions, corev1.DisruptionTarget); c == nil {
		t.Error("foreign condition dropped")
	}
	if c := findCondition(st.Conditions, corev1.PodReady); c == nil || !strings.Contains(c.Message, "[app]") {
		t.Errorf("Ready = %+v", c)
	}
	if pod.Status.Phase != "" || len(pod.Status.Conditions) != 2 {
		t.Error("PodStatusFor changed the pod")
	}

	// Pull progress while activating; no IP yet.
	tk = testTask(task.StatusActivating)
	tk.PullProgress = "2/3 layers"
	st = PodStatusFor(tk, testPod())
	if w := st.ContainerStatuses[0].State.Waiting; w == nil || w.Message != "pulling image: 2/3 layers" {
		t.Errorf("waiting = %+v", w)
	}
	if st.PodIP != "" || st.PodIPs != nil || cond(st, corev1.PodReadyToStartContainers) != "False" {
		t.Errorf("status without IP = %+v", st)
	}
}

const time1h = 3600e9

func TestImageID(t *testing.T) {
	tests := []struct{ image, digest, want string }{
		{"nginx:1.27", "sha256:abc", "nginx@sha256:abc"},
		{"nginx", "sha256:abc", "nginx@sha256:abc"},
		{"localhost:5000/app:v1", "sha256:abc", "localhost:5000/app@sha256:abc"},
		{"localhost:5000/app", "sha256:abc", "localhost:5000/app@sha256:abc"},
		{"app@sha256:old", "sha256:abc", "app@sha256:abc"},
		{"app", "repo@sha256:abc", "repo@sha256:abc"},
	}
	for _, tt := range tests {
		if got := imageID(tt.image, tt.digest); got != tt.want {
			t.Errorf("imageID(%q, %q) = %q, want %q", tt.image, tt.digest, got, tt.want)
		}
	}
}

func TestConfigErrorMessage(t *testing.T) {
	msg := `container has runAsNonRoot and image will run as root (pod: "default/p", container: app)`
	tk := &task.Task{LastStatus: task.StatusRunning, DesiredStatus: task.StatusRunning,
		Containers: []task.Container{{Name: "app", Essential: true, Reason: task.ReasonCreateContainerConfigError + ": " + msg}}}
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
	st := PodStatusFor(tk, pod)
	w := st.ContainerStatuses[0].State.Waiting
	if w == nil || w.Reason != "CreateContainerConfigError" || w.Message != msg {
		t.Fatalf("state = %+v, want waiting CreateContainerConfigError with the runtime's message", st.ContainerStatuses[0].State)
	}
	if st.Phase != corev1.PodPending {
		t.Errorf("phase = %s, want Pending", st.Phase)
	}
}
