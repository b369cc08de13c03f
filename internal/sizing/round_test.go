package sizing

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"vessel.dev/vessel/internal/errdefs"
)

func TestPodNeeds(t *testing.T) {
	tests := []struct {
		name            string
		init, container []Resources
		want            Resources
	}{
		{"nothing", nil, nil, Resources{}},
		{"sum of containers", nil, []Resources{{250, 512}, {500, 1024}}, Resources{750, 1536}},
		{"init larger than the sum", []Resources{{2000, 4096}, {100, 100}}, []Resources{{250, 512}, {250, 512}}, Resources{2000, 4096}},
		{"largest init, not the sum of inits", []Resources{{1000, 1024}, {1000, 1024}}, []Resources{{100, 100}}, Resources{1000, 1024}},
		{"per resource", []Resources{{4000, 128}}, []Resources{{250, 2048}, {250, 2048}}, Resources{4000, 4096}},
		{"sum larger than init", []Resources{{500, 1000}}, []Resources{{300, 600}, {300, 600}}, Resources{600, 1200}},
	}
	for _, tt := range tests {
		if got := PodNeeds(tt.init, tt.container); got != tt.want {
			t.Errorf("%s: PodNeeds = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestRoundUp(t *testing.T) {
	tests := []struct {
		name string
		need Resources
		want string
	}{
		{"no requests", Resources{0, 0}, "0.25vCPU 0.5GB"},
		{"documented example: 1 vCPU 8 GiB", Resources{1000, 8192}, "2vCPU 9GB"},
		{"memory exactly at boundary: 1792+256 = 2048", Resources{0, 1792}, "0.25vCPU 2GB"},
		{"one MiB over the boundary", Resources{0, 1793}, "0.5vCPU 3GB"},
		{"256 MiB + overhead = 0.5 GiB", Resources{250, 256}, "0.25vCPU 0.5GB"},
		{"257 MiB", Resources{250, 257}, "0.25vCPU 1GB"},
		{"cpu exactly 0.25", Resources{250, 0}, "0.25vCPU 0.5GB"},
		{"cpu just above 0.25", Resources{251, 0}, "0.5vCPU 1GB"},
		{"0.3 vCPU 1 GiB", Resources{300, 1024}, "0.5vCPU 2GB"},
		{"1 vCPU, memory at row top", Resources{1000, 7936}, "1vCPU 8GB"},
		{"memory beyond a cpu's range moves cpu up", Resources{500, 4096}, "1vCPU 5GB"},
		{"2 vCPU 30000 MiB", Resources{2000, 30000}, "4vCPU 30GB"},
		{"4 vCPU 30 GiB needs 8 vCPU", Resources{4000, 30720}, "8vCPU 32GB"},
		{"cpu just above 4", Resources{4001, 1}, "8vCPU 16GB"},
		{"8 vCPU 17 GiB rounds to a 4 GiB step", Resources{8000, 17408}, "8vCPU 20GB"},
		{"16 vCPU smallest", Resources{8001, 0}, "16vCPU 32GB"},
		{"largest exactly", Resources{16000, 122880 - 256}, "16vCPU 120GB"},
		{"memory only, large", Resources{0, 60000}, "8vCPU 60GB"},
	}
	for _, tt := range tests {
		got, err := RoundUp(tt.need)
		if err != nil || got.String() != tt.want {
			t.Errorf("%s: RoundUp(%+v) = %v, %v; want %s", tt.name, tt.need, got, err, tt.want)
		}
	}
}

// Every table entry is what RoundUp returns for its own size minus the
// overhead, and one MiB more never returns it.
func TestRoundUpEveryEntry(t *testing.T) {
	for _, s := range Table() {
		got, err := RoundUp(Resources{s.MilliCPU, s.MemoryMiB - OverheadMiB})
		if err != nil || got != s {
			t.Errorf("RoundUp(%v - overhead) = %v, %v", s, got, err)
		}
		got, err = RoundUp(Resources{s.MilliCPU, s.MemoryMiB - OverheadMiB + 1})
		if err == nil && got == s {
			t.Errorf("RoundUp(%v - overhead + 1 MiB) = %v, want something larger", s, got)
		}
	}
}

func TestRoundUpTooLarge(t *testing.T) {
	tests := []struct {
		name     string
		need     Resources
		wantNeed string
	}{
		{"17 vCPU", Resources{17000, 1024}, "17 vCPU and 1.25 GiB"},
		{"16 vCPU + 120 GiB", Resources{16000, 122880}, "16 vCPU and 120.25 GiB"},
		{"memory only", Resources{250, 200 * 1024}, "0.25 vCPU and 200.25 GiB"},
	}
	for _, tt := range tests {
		_, err := RoundUp(tt.need)
		var tl *TooLargeError
		if !errors.As(err, &tl) {
			t.Errorf("%s: RoundUp = %v, want *TooLargeError", tt.name, err)
			continue
		}
		if tl.Reason != ReasonExceedsMax || ReasonExceedsMax != "POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE" {
			t.Errorf("%s: Reason = %q", tt.name, tl.Reason)
		}
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: error is not an invalid argument", tt.name)
		}
		msg := err.Error()
		for _, want := range []string{"Your pod's cpu/memory requirements exceed the max Fargate configuration", "16vCPU 120GB", tt.wantNeed} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: message %q does not contain %q", tt.name, msg, want)
			}
		}
	}
}

func TestRoundUpNegative(t *testing.T) {
	for _, r := range []Resources{{-1, 0}, {0, -1}} {
		_, err := RoundUp(r)
		var tl *TooLargeError
		if !errdefs.IsInvalidArgument(err) || errors.As(err, &tl) {
			t.Errorf("RoundUp(%+v) = %v, want a plain invalid argument", r, err)
		}
	}
}

func res(req, lim map[corev1.ResourceName]string) corev1.ResourceRequirements {
	var rr corev1.ResourceRequirements
	if req != nil {
		rr.Requests = corev1.ResourceList{}
		for k, v := range req {
			rr.Requests[k] = resource.MustParse(v)
		}
	}
	if lim != nil {
		rr.Limits = corev1.ResourceList{}
		for k, v := range lim {
			rr.Limits[k] = resource.MustParse(v)
		}
	}
	return rr
}

type rl = map[corev1.ResourceName]string

const (
	cpu = corev1.ResourceCPU
	mem = corev1.ResourceMemory
)

func TestForPodSpec(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name string
		spec corev1.PodSpec
		want string
	}{
		{"no requests", corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}, "0.25vCPU 0.5GB"},
		{"documented example", corev1.PodSpec{Containers: []corev1.Container{
			{Resources: res(rl{cpu: "1", mem: "8Gi"}, nil)},
		}}, "2vCPU 9GB"},
		{"two containers summed", corev1.PodSpec{Containers: []corev1.Container{
			{Resources: res(rl{cpu: "250m", mem: "512Mi"}, nil)},
			{Resources: res(rl{cpu: "250m", mem: "512Mi"}, nil)},
		}}, "0.5vCPU 2GB"},
		{"init container larger than the sum", corev1.PodSpec{
			InitContainers: []corev1.Container{{Resources: res(rl{cpu: "2", mem: "3Gi"}, nil)}},
			Containers: []corev1.Container{
				{Resources: res(rl{cpu: "250m", mem: "512Mi"}, nil)},
				{Resources: res(rl{cpu: "250m", mem: "512Mi"}, nil)},
			}}, "2vCPU 4GB"},
		{"limits when no requests", corev1.PodSpec{Containers: []corev1.Container{
			{Resources: res(nil, rl{cpu: "1", mem: "2Gi"})},
		}}, "1vCPU 3GB"},
		{"requests win over limits", corev1.PodSpec{Containers: []corev1.Container{
			{Resources: res(rl{cpu: "250m", mem: "256Mi"}, rl{cpu: "4", mem: "16Gi"})},
		}}, "0.25vCPU 0.5GB"},
		{"limit per resource: cpu requested, memory only limited", corev1.PodSpec{Containers: []corev1.Container{
			{Resources: res(rl{cpu: "250m"}, rl{cpu: "4", mem: "4Gi"})},
		}}, "1vCPU 5GB"}, // 0.5 vCPU stops at 4 GiB
		{"decimal G rounds up to whole MiB", corev1.PodSpec{Containers: []corev1.Container{
			{Resources: res(rl{mem: "1792Mi"}, nil)},
			{Resources: res(rl{mem: "1"}, nil)}, // one byte
		}}, "0.5vCPU 3GB"},
		{"sidecar adds to the containers", corev1.PodSpec{
			InitContainers: []corev1.Container{{RestartPolicy: &always, Resources: res(rl{cpu: "1", mem: "1Gi"}, nil)}},
			Containers:     []corev1.Container{{Resources: res(rl{cpu: "1", mem: "1Gi"}, nil)}},
		}, "2vCPU 4GB"},
		{"init after a sidecar runs with it", corev1.PodSpec{
			InitContainers: []corev1.Container{
				{RestartPolicy: &always, Resources: res(rl{cpu: "500m", mem: "1Gi"}, nil)},
				{Resources: res(rl{cpu: "2", mem: "4Gi"}, nil)},
			},
			Containers: []corev1.Container{{Resources: res(rl{cpu: "250m", mem: "512Mi"}, nil)}},
		}, "4vCPU 8GB"}, // 2.5 vCPU, 5 GiB + 256 MiB
		{"pod-level requests", corev1.PodSpec{
			Resources:  &corev1.ResourceRequirements{Requests: corev1.ResourceList{cpu: resource.MustParse("1"), mem: resource.MustParse("4Gi")}},
			Containers: []corev1.Container{{Resources: res(rl{cpu: "250m", mem: "512Mi"}, nil)}},
		}, "1vCPU 5GB"},
	}
	for _, tt := range tests {
		got, err := ForPodSpec(&tt.spec)
		if err != nil || got.String() != tt.want {
			t.Errorf("%s: ForPodSpec = %v, %v; want %s", tt.name, got, err, tt.want)
		}
	}
}

func TestForPodSpecTooLarge(t *testing.T) {
	spec := corev1.PodSpec{Containers: []corev1.Container{
		{Resources: res(rl{cpu: "16", mem: "100Gi"}, nil)},
		{Resources: res(rl{cpu: "1", mem: "1Gi"}, nil)},
	}}
	_, err := ForPodSpec(&spec)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Need != (Resources{17000, 101*1024 + 256}) {
		t.Fatalf("ForPodSpec = %v (%+v), want too large needing 17 vCPU", err, tl)
	}
}
