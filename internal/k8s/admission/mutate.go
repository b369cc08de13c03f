package admission

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/profile"
	"vessel.dev/vessel/internal/runtime"
)

// Names the webhooks write and read on pods.
const (
	// SchedulerName is the scheduler Vessel's bridge runs as.
	SchedulerName = "vessel-scheduler"
	// DefaultSchedulerName is the cluster's own scheduler, which Vessel may
	// take a pod from.
	DefaultSchedulerName = corev1.DefaultSchedulerName
	// LabelFargateProfile names the profile that took a pod (and, set by the
	// user, the one it asks for).
	LabelFargateProfile = profile.LabelProfile
	// LabelProfile is Vessel's own copy of LabelFargateProfile.
	LabelProfile = "vessel.dev/profile"
	// AnnotationRuntime records the sandbox runtime a pod runs in when it
	// does not name one with spec.runtimeClassName.
	AnnotationRuntime = "vessel.dev/runtime"
)

// Runtimes are the sandbox runtimes a pod may name, by runtimeClassName or
// by AnnotationRuntime, strongest first: runtime.Names but sim, the
// stand-in for tests whose sandboxes run no process. A pod cannot ask for
// sim (and `vessel k8s install` makes no RuntimeClass for it), though a
// host whose default runtime is sim runs the pods that name none.
var Runtimes = slices.DeleteFunc(slices.Clone(runtime.Names), func(n string) bool { return n == runtime.Sim })

// Profile is what the webhook needs of a Fargate profile.
type Profile struct {
	Name      string
	Selectors []profile.Selector
	// Subnets the profile places pods in; carried for the scheduler.
	Subnets []string
	// Runtime is the profile's default sandbox runtime ("" = the host's).
	Runtime string
}

// JSONPatchOp is one RFC 6902 operation.
type JSONPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Mutate decides what the mutating webhook does to pod, given the active
// profiles. For a pod a profile takes it returns the patch (schedulerName,
// the two profile labels and, when due, the runtime annotation) and that
// profile; matched points into profiles. It returns an empty patch and a
// nil profile for a pod that matches nothing, and for a pod that names a
// scheduler other than the default one or Vessel's. A pod already carrying
// everything gets an empty patch and its profile. pod.Namespace must be set
// (HandleMutate fills it from the request). Mutate does not change pod.
//
// A pod matches a profile by the EKS rules of internal/profile: its
// namespace and all labels of one selector, with `*` and `?` globs; several
// matching profiles are decided by name, first wins; the label
// eks.amazonaws.com/fargate-profile picks one, which the pod must still
// match. A matching pod gets:
//
//   - spec.schedulerName: vessel-scheduler
//   - labels eks.amazonaws.com/fargate-profile=<name> and vessel.dev/profile=<name>
//   - the annotation vessel.dev/runtime=<profile's default runtime>, only
//     when the profile has one and the pod names no runtime itself (by
//     spec.runtimeClassName, or by an annotation vessel.dev/runtime it
//     already carries). A pod's own choice is always kept.
//
// Pods that name another scheduler (anything but "", "default-scheduler"
// and "vessel-scheduler") are left alone even when a profile matches: the
// user asked for that scheduler explicitly. Pods matching no profile are not
// touched (empty patch); they stay with the cluster's own scheduler. Only
// CREATE is mutated: schedulerName cannot change afterwards.
func Mutate(pod *corev1.Pod, profiles []Profile) (patch []JSONPatchOp, matched *Profile) {
	switch pod.Spec.SchedulerName {
	case "", DefaultSchedulerName, SchedulerName:
	default:
		return nil, nil
	}
	ps := make([]profile.Profile, len(profiles))
	for i, p := range profiles {
		ps[i] = profile.Profile{Name: p.Name, Selectors: p.Selectors}
	}
	m, ok := profile.Match(ps, pod.Namespace, pod.Labels)
	if !ok {
		return nil, nil
	}
	for i := range profiles {
		if profiles[i].Name == m.Name {
			matched = &profiles[i]
			break
		}
	}

	if pod.Spec.SchedulerName != SchedulerName {
		op := "replace"
		if pod.Spec.SchedulerName == "" {
			op = "add"
		}
		patch = append(patch, JSONPatchOp{Op: op, Path: "/spec/schedulerName", Value: SchedulerName})
	}
	patch = append(patch, setMapEntries("/metadata/labels", pod.Labels, [][2]string{
		{LabelFargateProfile, matched.Name},
		{LabelProfile, matched.Name},
	})...)
	if matched.Runtime != "" && RuntimeOf(pod) == "" {
		patch = append(patch, setMapEntries("/metadata/annotations", pod.Annotations, [][2]string{
			{AnnotationRuntime, matched.Runtime},
		})...)
	}
	return patch, matched
}

// RuntimeOf returns the runtime a pod names: its runtimeClassName, else its
// AnnotationRuntime annotation, else "".
func RuntimeOf(pod *corev1.Pod) string {
	if rc := pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
		return *rc
	}
	return pod.Annotations[AnnotationRuntime]
}

// setMapEntries returns the operations that make the map at path hold kv:
// one "add" of the whole map when it does not exist, else one "add" per
// entry that is missing or different (on an object member "add" replaces).
func setMapEntries(path string, cur map[string]string, kv [][2]string) []JSONPatchOp {
	if cur == nil {
		m := make(map[string]string, len(kv))
		for _, e := range kv {
			m[e[0]] = e[1]
		}
		return []JSONPatchOp{{Op: "add", Path: path, Value: m}}
	}
	var ops []JSONPatchOp
	for _, e := range kv {
		if v, ok := cur[e[0]]; ok && v == e[1] {
			continue
		}
		ops = append(ops, JSONPatchOp{Op: "add", Path: path + "/" + escapePointer(e[0]), Value: e[1]})
	}
	return ops
}

// escapePointer escapes a JSON Pointer reference token (RFC 6901).
func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}
