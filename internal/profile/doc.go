// Package profile owns the EKS Fargate profile rules that decide which pods
// Vessel takes: validation of profile names and selectors, glob matching of
// namespaces and labels, and the choice among several matching profiles.
//
// It holds only what matching needs (a name and selectors); the control
// plane keeps the full profile record (cluster, role, subnets, status, tags)
// and the Kubernetes bridge calls Match for each new pod. The package is
// pure and imports nothing of Vessel's except internal/errdefs.
//
// Wildcards: namespaces, label keys and label values may contain `*` (any
// run of characters, including none and including `/`) and `?` (exactly one
// character). Every other character, `[`, `]` and `\` included, matches
// itself. path.Match is not used because its `*` stops at `/`, which label
// keys such as `app.kubernetes.io/name` contain, and because it gives `[`
// and `\` meanings EKS does not document.
//
// Usage:
//
//	if err := profile.ValidateName(req.Name); err != nil { ... }
//	if err := profile.ValidateSelectors(req.Selectors); err != nil { ... }
//
//	p, ok := profile.Match(activeProfiles, pod.Namespace, pod.Labels)
//	if !ok { /* leave the pod to the cluster's own scheduler */ }
//	pod.Labels[profile.LabelProfile] = p.Name
package profile
