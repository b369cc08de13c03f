package admission

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"vessel.dev/vessel/internal/profile"
)

var testProfiles = []Profile{
	{Name: "zeta", Selectors: []profile.Selector{{Namespace: "default"}}, Subnets: []string{"10.0.1.0/24"}},
	{Name: "beta", Selectors: []profile.Selector{{Namespace: "default", Labels: map[string]string{"app": "web"}}},
		Runtime: "gvisor"},
	{Name: "globs", Selectors: []profile.Selector{{Namespace: "team-*", Labels: map[string]string{"k*": "v?"}}},
		Runtime: "microvm"},
}

type podOpt func(*corev1.Pod)

func newPod(ns string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns},
		Spec: corev1.PodSpec{
			SchedulerName: corev1.DefaultSchedulerName,
			Containers:    []corev1.Container{{Name: "app", Image: "nginx"}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func labels(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Labels = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func annotations(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Annotations = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func scheduler(name string) podOpt { return func(p *corev1.Pod) { p.Spec.SchedulerName = name } }

func runtimeClass(name string) podOpt {
	return func(p *corev1.Pod) { p.Spec.RuntimeClassName = &name }
}

// applyPatch applies add/replace operations on object members, which is all
// Mutate emits; anything else fails the test.
func applyPatch(t *testing.T, pod *corev1.Pod, patch []JSONPatchOp) *corev1.Pod {
	t.Helper()
	raw, _ := json.Marshal(pod)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, op := range patch {
		if op.Op != "add" && op.Op != "replace" {
			t.Fatalf("unexpected op %q", op.Op)
		}
		toks := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")
		cur := doc
		for _, tok := range toks[:len(toks)-1] {
			next, ok := cur[tok].(map[string]any)
			if !ok {
				t.Fatalf("patch %s: parent %q missing", op.Path, tok)
			}
			cur = next
		}
		last := strings.NewReplacer("~1", "/", "~0", "~").Replace(toks[len(toks)-1])
		if _, exists := cur[last]; op.Op == "replace" && !exists {
			t.Fatalf("patch %s: replace of a missing member", op.Path)
		}
		cur[last] = op.Value
	}
	raw, _ = json.Marshal(doc)
	var out corev1.Pod
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestMutate(t *testing.T) {
	tests := []struct {
		name        string
		pod         *corev1.Pod
		wantProfile string // "" = not taken, empty patch
		wantRuntime string // annotation after the patch
		wantOps     int    // -1 = do not check
	}{
		{"namespace only", newPod("default"), "zeta", "", 2},
		{"labels pick the name that sorts first", newPod("default", labels("app", "web")), "beta", "gvisor", 4},
		{"glob namespace and label", newPod("team-a", labels("kind", "v1")), "globs", "microvm", 4},
		{"glob value too long", newPod("team-a", labels("kind", "v10")), "", "", 0},
		{"no profile for namespace", newPod("other"), "", "", 0},
		{"pinned to a matching profile", newPod("default", labels("app", "web", LabelFargateProfile, "zeta")), "zeta", "", 2},
		{"pinned but not matching its selectors", newPod("other", labels(LabelFargateProfile, "zeta")), "", "", 0},
		{"pinned to an unknown profile", newPod("default", labels(LabelFargateProfile, "nope")), "", "", 0},
		{"empty schedulerName is taken", newPod("default", scheduler("")), "zeta", "", 2},
		{"another scheduler is left alone", newPod("default", scheduler("my-scheduler")), "", "", 0},
		{"already vessel-scheduler and labelled: nothing to do",
			newPod("default", scheduler(SchedulerName), labels(LabelFargateProfile, "zeta", LabelProfile, "zeta")), "zeta", "", 0},
		{"runtimeClassName kept, no annotation", newPod("default", labels("app", "web"), runtimeClass("runc")), "beta", "", 3},
		{"runtime annotation kept", newPod("default", labels("app", "web"), annotations(AnnotationRuntime, "microvm")), "beta", "microvm", 3},
		{"existing annotations get one entry", newPod("default", labels("app", "web"), annotations("a", "b")), "beta", "gvisor", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := json.Marshal(tt.pod)
			patch, matched := Mutate(tt.pod, testProfiles)
			if after, _ := json.Marshal(tt.pod); string(after) != string(before) {
				t.Fatal("Mutate changed its argument")
			}
			if tt.wantOps >= 0 && len(patch) != tt.wantOps {
				t.Errorf("patch has %d ops, want %d: %+v", len(patch), tt.wantOps, patch)
			}
			if tt.wantProfile == "" {
				if matched != nil || len(patch) != 0 {
					t.Fatalf("Mutate = %+v, %+v; want nothing", patch, matched)
				}
				return
			}
			if matched == nil || matched.Name != tt.wantProfile {
				t.Fatalf("matched %+v, want %q", matched, tt.wantProfile)
			}
			got := applyPatch(t, tt.pod, patch)
			if got.Spec.SchedulerName != SchedulerName {
				t.Errorf("schedulerName = %q", got.Spec.SchedulerName)
			}
			if got.Labels[LabelFargateProfile] != tt.wantProfile || got.Labels[LabelProfile] != tt.wantProfile {
				t.Errorf("labels = %v", got.Labels)
			}
			for k, v := range tt.pod.Labels {
				if k != LabelFargateProfile && got.Labels[k] != v {
					t.Errorf("label %s lost: %v", k, got.Labels)
				}
			}
			for k, v := range tt.pod.Annotations {
				if got.Annotations[k] != v {
					t.Errorf("annotation %s changed: %v", k, got.Annotations)
				}
			}
			if got.Annotations[AnnotationRuntime] != tt.wantRuntime {
				t.Errorf("runtime annotation = %q, want %q", got.Annotations[AnnotationRuntime], tt.wantRuntime)
			}
			if tt.pod.Spec.RuntimeClassName != nil && (got.Spec.RuntimeClassName == nil ||
				*got.Spec.RuntimeClassName != *tt.pod.Spec.RuntimeClassName) {
				t.Error("runtimeClassName changed")
			}
		})
	}
}

func TestMutatePatchShape(t *testing.T) {
	// Labels exist: one add per label, with "/" escaped as ~1; schedulerName
	// present: replace.
	patch, _ := Mutate(newPod("default", labels("x", "y")), testProfiles)
	want := []JSONPatchOp{
		{Op: "replace", Path: "/spec/schedulerName", Value: SchedulerName},
		{Op: "add", Path: "/metadata/labels/eks.amazonaws.com~1fargate-profile", Value: "zeta"},
		{Op: "add", Path: "/metadata/labels/vessel.dev~1profile", Value: "zeta"},
	}
	if !reflect.DeepEqual(patch, want) {
		t.Errorf("patch = %+v\nwant    %+v", patch, want)
	}
	// No labels, no scheduler name: whole-map add, and add of the name.
	patch, _ = Mutate(newPod("default", scheduler("")), testProfiles)
	want = []JSONPatchOp{
		{Op: "add", Path: "/spec/schedulerName", Value: SchedulerName},
		{Op: "add", Path: "/metadata/labels", Value: map[string]string{LabelFargateProfile: "zeta", LabelProfile: "zeta"}},
	}
	if !reflect.DeepEqual(patch, want) {
		t.Errorf("patch = %+v\nwant    %+v", patch, want)
	}
}

func TestMutateMatchedPointsIntoProfiles(t *testing.T) {
	_, m := Mutate(newPod("default"), testProfiles)
	if m != &testProfiles[0] || len(m.Subnets) != 1 {
		t.Errorf("matched = %p %+v, want &testProfiles[0]", m, m)
	}
}

func TestRuntimeOf(t *testing.T) {
	tests := []struct {
		pod  *corev1.Pod
		want string
	}{
		{newPod("default"), ""},
		{newPod("default", runtimeClass("gvisor")), "gvisor"},
		{newPod("default", runtimeClass("")), ""},
		{newPod("default", annotations(AnnotationRuntime, "runc")), "runc"},
		{newPod("default", runtimeClass("microvm"), annotations(AnnotationRuntime, "runc")), "microvm"},
	}
	for i, tt := range tests {
		if got := RuntimeOf(tt.pod); got != tt.want {
			t.Errorf("%d: RuntimeOf = %q, want %q", i, got, tt.want)
		}
	}
}
