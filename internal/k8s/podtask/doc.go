// Package podtask turns a Kubernetes pod into the task Vessel's control
// plane runs: the pod → task half of the bridge's scheduler, as a pure
// function (Convert, whose comment lists what it maps and what it leaves
// out). The caller resolves everything that needs the API server first
// (config maps, secrets, the profile, the Kubernetes service address) and
// passes it in Inputs. SecurityProblems, the security-context rules, is
// shared with the admission webhook, so that what is admitted is what runs.
//
// It imports task, sizing and errdefs of Vessel's, and k8s.io/api and
// k8s.io/apimachinery only; it must not import client-go, the store or the
// server.
//
// Usage:
//
//	t, err := podtask.Convert(pod, podtask.Inputs{ConfigMaps: cms, Secrets: secs,
//		KubernetesServiceHost: "10.96.0.1", KubernetesServicePort: 443,
//		ClusterName: "default", Profile: p.Name, Subnets: p.Subnets, Runtime: rt,
//		ServiceAccountToken: tok, ClusterCA: ca,
//		ClusterDNS: []string{"10.96.0.10"}, ClusterDomain: "cluster.local"})
//	var tooLarge *sizing.TooLargeError
//	if errors.As(err, &tooLarge) { /* Pending, reason tooLarge.Reason */ }
//	pod.Annotations[sizing.AnnotationCapacityProvisioned] = podtask.CapacityProvisioned(t)
package podtask
