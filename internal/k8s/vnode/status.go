package vnode

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"vessel.dev/vessel/internal/task"
)

// Container state reasons, as the kubelet writes them.
const (
	ReasonContainerCreating      = "ContainerCreating"
	ReasonPodInitializing        = "PodInitializing"
	ReasonCompleted              = "Completed"
	ReasonError                  = "Error"
	ReasonOOMKilled              = "OOMKilled"
	ReasonContainerStatusUnknown = "ContainerStatusUnknown"
	ReasonCrashLoopBackOff       = "CrashLoopBackOff"
	// ReasonCreateContainerConfigError: the runtime refused the
	// container's configuration (runAsNonRoot with a root user); the
	// container waits and the pod stays Pending.
	ReasonCreateContainerConfigError = task.ReasonCreateContainerConfigError
)

// PodStatusFor returns pod's status as task t shows it. It keeps from
// pod.Status what the bridge does not own: qosClass and conditions of other
// types. It does not change its arguments.
//
// The pod status: Pending until the task is RUNNING, Running while it runs,
// and once it has stopped Succeeded when every app container exited 0,
// else Failed, whatever the restartPolicy: Vessel never restarts a stopped
// task in place (restartCount stays 0), the pod's controller replaces the
// pod. The pod IP and host IP are both the task's IP (the sandbox is the
// node). Conditions the bridge does not own (readiness gates, disruption
// targets) are kept from the pod's current status.
func PodStatusFor(t *task.Task, pod *corev1.Pod) corev1.PodStatus {
	st := corev1.PodStatus{QOSClass: pod.Status.QOSClass}
	stopped := t.LastStatus == task.StatusStopped
	if t.IP != "" {
		st.PodIP, st.HostIP = t.IP, t.IP
		st.PodIPs = []corev1.PodIP{{IP: t.IP}}
		st.HostIPs = []corev1.HostIP{{IP: t.IP}}
	}
	if !t.CreatedAt.IsZero() {
		st.StartTime = ptrTime(t.CreatedAt)
	}

	initDone := true
	for _, c := range pod.Spec.InitContainers {
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		cs := containerStatus(t, c, initDone, stopped)
		if sidecar {
			if cs.State.Running == nil {
				initDone = false
			}
		} else {
			cs.Ready = cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
			if !cs.Ready {
				initDone = false
			}
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	var unready []string
	allExited, allZero := true, true
	// A container whose configuration was refused holds the pod Pending,
	// as the kubelet's waiting containers that never ran do.
	configWaiting := false
	for _, cs := range st.InitContainerStatuses {
		configWaiting = configWaiting || cs.State.Waiting != nil && cs.State.Waiting.Reason == ReasonCreateContainerConfigError
	}
	for _, c := range pod.Spec.Containers {
		cs := containerStatus(t, c, initDone, stopped)
		configWaiting = configWaiting || cs.State.Waiting != nil && cs.State.Waiting.Reason == ReasonCreateContainerConfigError
		if !cs.Ready {
			unready = append(unready, c.Name)
		}
		if term := cs.State.Terminated; term == nil {
			allExited = false
		} else if term.ExitCode != 0 {
			allZero = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}

	switch {
	case stopped || allExited && len(pod.Spec.Containers) > 0 && !t.LastStatus.Before(task.StatusRunning):
		st.Phase = corev1.PodFailed
		if allExited && allZero {
			st.Phase = corev1.PodSucceeded
		}
		if stopped && st.Phase == corev1.PodFailed {
			st.Reason, st.Message = t.StopCode, t.StoppedReason
		}
	case !t.LastStatus.Before(task.StatusRunning) && !configWaiting:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}

	// Conditions.
	at := func(ts ...time.Time) metav1.Time {
		for _, x := range ts {
			if !x.IsZero() {
				return metav1.NewTime(x)
			}
		}
		return metav1.Time{}
	}
	cond := func(typ corev1.PodConditionType, ok bool, reason, msg string, when metav1.Time) corev1.PodCondition {
		c := corev1.PodCondition{Type: typ, Status: corev1.ConditionFalse, LastTransitionTime: when}
		if ok {
			c.Status = corev1.ConditionTrue
		} else {
			c.Reason, c.Message = reason, msg
		}
		return c
	}
	end := at(t.StoppedAt, t.ExecutionStoppedAt, t.StoppingAt)
	sandbox := t.IP != "" && !stopped
	containersReady := len(unready) == 0 && st.Phase == corev1.PodRunning
	notReadyMsg := fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if len(unready) == 0 {
		notReadyMsg = ""
	}
	ready := containersReady
	readyReason, readyMsg := "ContainersNotReady", notReadyMsg
	if ready {
		for _, g := range pod.Spec.ReadinessGates {
			if c := findCondition(pod.Status.Conditions, g.ConditionType); c == nil || c.Status != corev1.ConditionTrue {
				ready, readyReason = false, "ReadinessGatesNotReady"
				readyMsg = fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist or is not True", g.ConditionType)
				break
			}
		}
	}
	readyWhen := at(t.StartedAt, t.CreatedAt)
	if !ready {
		readyWhen = at(end.Time, t.CreatedAt)
	}
	ours := []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, sandbox, "", "", at(t.ConnectivityAt, t.CreatedAt)),
		cond(corev1.PodInitialized, initDone, "ContainersNotInitialized",
			"containers with incomplete status: ["+strings.Join(incompleteInits(st.InitContainerStatuses, pod), " ")+"]",
			at(t.StartedAt, t.CreatedAt)),
		cond(corev1.ContainersReady, containersReady, "ContainersNotReady", notReadyMsg, readyWhen),
		cond(corev1.PodReady, ready, readyReason, readyMsg, readyWhen),
		cond(corev1.PodScheduled, true, "", "", at(t.CreatedAt)),
	}
	for i := range ours {
		// Keep the transition time of a condition whose status did not change.
		if old := findCondition(pod.Status.Conditions, ours[i].Type); old != nil && old.Status == ours[i].Status {
			ours[i].LastTransitionTime = old.LastTransitionTime
		}
	}
	st.Conditions = ours
	for _, c := range pod.Status.Conditions {
		if findCondition(ours, c.Type) == nil {
			st.Conditions = append(st.Conditions, c)
		}
	}
	return st
}

func incompleteInits(statuses []corev1.ContainerStatus, pod *corev1.Pod) []string {
	var out []string
	for i, cs := range statuses {
		c := pod.Spec.InitContainers[i]
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if sidecar && cs.State.Running == nil || !sidecar && !cs.Ready {
			out = append(out, cs.Name)
		}
	}
	return out
}

func findCondition(cs []corev1.PodCondition, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

// containerStatus returns the status of pod container c from the task.
// initDone tells whether the init containers before it have completed.
func containerStatus(t *task.Task, c corev1.Container, initDone, stopped bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	tc := t.Container(c.Name)
	waiting := ReasonContainerCreating
	if !initDone {
		waiting = ReasonPodInitializing
	}
	if tc == nil {
		if stopped {
			cs.State.Terminated = unknownTermination(t)
		} else {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: waiting}
		}
		return cs
	}
	if tc.ImageDigest != "" {
		cs.ImageID = imageID(c.Image, tc.ImageDigest)
	}
	if tc.RuntimeID != "" {
		cs.ContainerID = "vessel://" + tc.RuntimeID
	}
	status := tc.LastStatus
	if status == "" {
		status = t.LastStatus
	}
	cs.RestartCount = int32(tc.RestartCount)
	if tc.LastExitCode != nil {
		cs.LastTerminationState.Terminated = terminated(*tc.LastExitCode, tc.LastReason, tc.LastStartedAt, tc.LastFinishedAt)
	}
	switch {
	case tc.ExitCode == nil && !stopped && status != task.StatusStopped && configError(tc.Reason) != "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonCreateContainerConfigError, Message: configError(tc.Reason)}
	case tc.ExitCode != nil && !stopped && t.DesiredStatus != task.StatusStopped && tc.Essential &&
		task.Restarts(t.RestartPolicy, *tc.ExitCode):
		// The agent restarts it after a back-off: the kubelet shows the
		// exit as the last state meanwhile.
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonCrashLoopBackOff,
			Message: "back-off restarting failed container " + c.Name}
		cs.LastTerminationState.Terminated = terminated(*tc.ExitCode, tc.Reason, firstSet(tc.StartedAt, t.StartedAt), tc.FinishedAt)
	case tc.ExitCode != nil:
		cs.State.Terminated = terminated(*tc.ExitCode, tc.Reason, firstSet(tc.StartedAt, t.StartedAt),
			firstSet(tc.FinishedAt, t.ExecutionStoppedAt, t.StoppingAt, t.StoppedAt))
	case stopped || status == task.StatusStopped:
		cs.State.Terminated = unknownTermination(t)
	case status == task.StatusRunning || !status.Before(task.StatusRunning):
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metaTime(firstSet(tc.StartedAt, t.StartedAt))}
		started := true
		if tc.StartupProbe != nil {
			started = tc.Started
		}
		cs.Started = &started
		cs.Ready = tc.HealthStatus != task.HealthUnhealthy &&
			(tc.HealthCheck == nil || tc.HealthStatus == task.HealthHealthy)
		if tc.ReadinessProbe != nil || tc.StartupProbe != nil {
			// The agent's probes decide.
			cs.Ready = cs.Ready && tc.Ready && started
		}
	default:
		w := &corev1.ContainerStateWaiting{Reason: waiting}
		if t.PullProgress != "" && waiting == ReasonContainerCreating {
			w.Message = "pulling image: " + t.PullProgress
		}
		cs.State.Waiting = w
	}
	if cs.Started == nil {
		f := false
		cs.Started = &f
	}
	return cs
}

// configError is the message of a CreateContainerConfigError reason, or "".
func configError(reason string) string {
	msg, ok := strings.CutPrefix(reason, ReasonCreateContainerConfigError+": ")
	if !ok {
		return ""
	}
	return msg
}

// terminated is a container's end as the kubelet shows it: the reason is
// OOMKilled, Completed (code 0) or Error, the message the task's reason.
func terminated(code int, reason string, started, finished time.Time) *corev1.ContainerStateTerminated {
	r := ReasonError
	switch {
	case strings.HasPrefix(reason, task.ReasonOutOfMemory):
		r = ReasonOOMKilled
	case code == 0:
		r = ReasonCompleted
	}
	return &corev1.ContainerStateTerminated{ExitCode: int32(code), Reason: r, Message: reason,
		StartedAt: metaTime(started), FinishedAt: metaTime(finished)}
}

// unknownTermination is what the kubelet reports for a container of a
// stopped pod that never reported an exit.
func unknownTermination(t *task.Task) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		ExitCode: 137, Reason: ReasonContainerStatusUnknown,
		Message:    "The container could not be located when the pod was terminated",
		FinishedAt: metaTime(t.StoppedAt),
	}
}

// imageID writes a digest as the kubelet does: repository@sha256:...
func imageID(image, digest string) string {
	if strings.Contains(digest, "@") {
		return digest
	}
	repo := image
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo + "@" + digest
}

func firstSet(ts ...time.Time) time.Time {
	for _, x := range ts {
		if !x.IsZero() {
			return x
		}
	}
	return time.Time{}
}

func metaTime(x time.Time) metav1.Time {
	if x.IsZero() {
		return metav1.Time{}
	}
	return metav1.NewTime(x)
}

func ptrTime(x time.Time) *metav1.Time {
	m := metav1.NewTime(x)
	return &m
}
