// Package admission holds the Kubernetes bridge's webhook decisions as pure
// functions: which pods Vessel takes (Mutate, HandleMutate: a pod a Fargate
// profile matches is given to vessel-scheduler with the profile's labels)
// and which of those a sandbox cannot run (Validate, HandleValidate:
// refused with EKS's messages). It speaks admission/v1 and core/v1 types
// and nothing else; serving HTTPS, TLS certificates and the webhook
// configurations are the bridge's job.
//
// It imports profile (matching), k8s/podtask (the security-context rules,
// shared with the conversion so that what is admitted is what runs) and
// errdefs of Vessel's, and k8s.io/api and k8s.io/apimachinery only; it must
// not import client-go, the store, the server or the runtime.
//
// Usage:
//
//	out := admission.HandleMutate(review, profiles)   // for /mutate
//	out := admission.HandleValidate(review)           // for /validate
//	// write out as JSON
package admission
