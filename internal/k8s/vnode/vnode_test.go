package vnode

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"vessel.dev/vessel/internal/task"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "app", Image: "docker.io/library/nginx:1.27"}},
		},
		Status: corev1.PodStatus{QOSClass: corev1.PodQOSBurstable},
	}
}

func testTask(status task.Status) *task.Task {
	return &task.Task{
		ID: "0123456789abcdef0123", CPUUnits: 2048, MemoryMiB: 9216, Runtime: "gvisor",
		LastStatus: status, CreatedAt: t0, Containers: []task.Container{{Name: "app", Image: "nginx"}},
	}
}

func TestNodeName(t *testing.T) {
	tests := []struct{ id, ip, want string }{
		{"0123456789abcdef0123", "10.0.1.23", "vessel-ip-10-0-1-23"},
		{"0123456789abcdef0123", "", "vessel-0123456789ab"},
		{"short", "", "vessel-short"},
		{"x", "fd00::1", "vessel-ip-fd00--1"},
	}
	for _, tt := range tests {
		if got := NodeName(&task.Task{ID: tt.id, IP: tt.ip}); got != tt.want {
			t.Errorf("NodeName(%q, %q) = %q, want %q", tt.id, tt.ip, got, tt.want)
		}
	}
}

func TestNodeFor(t *testing.T) {
	tk := testTask(task.StatusRunning)
	tk.IP = "10.0.1.23"
	n := NodeFor(testPod(), tk, NodeOptions{Zone: "zone-a", Ready: true, Now: t0, KernelVersion: "6.1"})
	if n.Name != "vessel-ip-10-0-1-23" {
		t.Errorf("name = %q", n.Name)
	}
	wantLabels := map[string]string{
		"vessel.dev/compute-type": "vessel", "eks.amazonaws.com/compute-type": "fargate",
		"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": "vessel-ip-10-0-1-23",
		"topology.kubernetes.io/zone": "zone-a", "vessel.dev/runtime": "gvisor",
	}
	for k, v := range wantLabels {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	if len(n.Labels) != len(wantLabels) {
		t.Errorf("labels = %v", n.Labels)
	}
	wantTaints := []corev1.Taint{
		{Key: "vessel.dev/compute-type", Value: "vessel", Effect: corev1.TaintEffectNoSchedule},
		{Key: "eks.amazonaws.com/compute-type", Value: "fargate", Effect: corev1.TaintEffectNoSchedule},
	}
	if len(n.Spec.Taints) != 2 || n.Spec.Taints[0] != wantTaints[0] || n.Spec.Taints[1] != wantTaints[1] {
		t.Errorf("taints = %+v", n.Spec.Taints)
	}
	for _, rl := range []corev1.ResourceList{n.Status.Capacity, n.Status.Allocatable} {
		checkQty(t, rl, corev1.ResourceCPU, "2")
		checkQty(t, rl, corev1.ResourceMemory, "9Gi")
		checkQty(t, rl, corev1.ResourcePods, "1")
		checkQty(t, rl, corev1.ResourceEphemeralStorage, "20Gi")
	}
	info := n.Status.NodeInfo
	if info.KubeletVersion != "v1.37.2-vessel" || info.ContainerRuntimeVersion != "vessel://gvisor" ||
		info.OSImage != DefaultOSImage || info.KernelVersion != "6.1" || info.OperatingSystem != "linux" || info.Architecture != "amd64" {
		t.Errorf("node info = %+v", info)
	}
	wantAddrs := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.1.23"}, {Type: corev1.NodeHostName, Address: n.Name}}
	if len(n.Status.Addresses) != 2 || n.Status.Addresses[0] != wantAddrs[0] || n.Status.Addresses[1] != wantAddrs[1] {
		t.Errorf("addresses = %+v", n.Status.Addresses)
	}
	if n.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 {
		t.Errorf("kubelet port = %d", n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	}
	r := n.Status.Conditions[0]
	if r.Type != corev1.NodeReady || r.Status != corev1.ConditionTrue || r.Reason != ReasonKubeletReady || !r.LastHeartbeatTime.Time.Equal(t0) {
		t.Errorf("ready = %+v", r)
	}
	if n.Annotations[AnnotationTaskID] != tk.ID || n.Annotations[AnnotationPod] != "shop/web" {
		t.Errorf("annotations = %v", n.Annotations)
	}
}

func TestNodeForOptions(t *testing.T) {
	tk := testTask(task.StatusActivating)
	tk.Runtime, tk.EphemeralStorageGiB = "", 50
	n := NodeFor(testPod(), tk, NodeOptions{Ready: false, Message: "pulling image", KubeletPort: 10260, Arch: "arm64", OSImage: "Debian"})
	if n.Name != "vessel-0123456789ab" {
		t.Errorf("name = %q", n.Name)
	}
	if _, ok := n.Labels[corev1.LabelTopologyZone]; ok {
		t.Error("zone label without a zone")
	}
	if _, ok := n.Labels[LabelRuntime]; ok {
		t.Error("runtime label without a runtime")
	}
	if n.Labels[corev1.LabelArchStable] != "arm64" || n.Status.NodeInfo.OSImage != "Debian" ||
		n.Status.NodeInfo.ContainerRuntimeVersion != "vessel://default" {
		t.Errorf("node = %+v %+v", n.Labels, n.Status.NodeInfo)
	}
	if len(n.Status.Addresses) != 1 || n.Status.Addresses[0].Type != corev1.NodeHostName {
		t.Errorf("addresses = %+v", n.Status.Addresses)
	}
	checkQty(t, n.Status.Capacity, corev1.ResourceEphemeralStorage, "50Gi")
	r := n.Status.Conditions[0]
	if r.Status != corev1.ConditionFalse || r.Reason != ReasonKubeletNoReady || r.Message != "pulling image" {
		t.Errorf("ready = %+v", r)
	}
	if n.Status.DaemonEndpoints.KubeletEndpoint.Port != 10260 {
		t.Error("kubelet port not taken from options")
	}
	// The smallest size.
	small := NodeFor(testPod(), &task.Task{ID: "a", CPUUnits: 256, MemoryMiB: 512}, NodeOptions{})
	checkQty(t, small.Status.Capacity, corev1.ResourceCPU, "250m")
	checkQty(t, small.Status.Capacity, corev1.ResourceMemory, "512Mi")
}

func checkQty(t *testing.T, rl corev1.ResourceList, name corev1.ResourceName, want string) {
	t.Helper()
	got, ok := rl[name]
	if w := resource.MustParse(want); !ok || got.Cmp(w) != 0 {
		t.Errorf("%s = %s, want %s", name, got.String(), want)
	}
}
