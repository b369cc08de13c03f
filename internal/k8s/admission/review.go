package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HandleMutate answers a mutating AdmissionReview for pods. The response
// carries the request's UID and, for a pod a profile takes on CREATE, a
// JSONPatch built by Mutate. Anything else (another resource, another
// operation, a pod matching nothing) is allowed unchanged. A review with no
// request, or a pod that cannot be decoded, is refused with code 400.
// HandleMutate never returns nil and does not change review.
func HandleMutate(review *admissionv1.AdmissionReview, profiles []Profile) *admissionv1.AdmissionReview {
	req, pod, resp := decode(review)
	if resp != nil || pod == nil || req.Operation != admissionv1.Create {
		return respond(req, resp)
	}
	patch, _ := Mutate(pod, profiles)
	if len(patch) == 0 {
		return respond(req, nil)
	}
	raw, err := json.Marshal(patch)
	if err != nil { // cannot happen: the ops hold strings and string maps
		return respond(req, refuse(http.StatusInternalServerError, "encoding patch: "+err.Error()))
	}
	pt := admissionv1.PatchTypeJSONPatch
	return respond(req, &admissionv1.AdmissionResponse{Allowed: true, PatchType: &pt, Patch: raw})
}

// HandleValidate answers a validating AdmissionReview for pods: a pod that
// Validate rejects on CREATE or UPDATE (ephemeral containers arrive as
// updates) is refused with code 403 and Validate's message; anything else is
// allowed. A review with no request, or a pod that cannot be decoded, is
// refused with code 400. HandleValidate never returns nil and does not
// change review.
func HandleValidate(review *admissionv1.AdmissionReview) *admissionv1.AdmissionReview {
	req, pod, resp := decode(review)
	if resp != nil || pod == nil {
		return respond(req, resp)
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return respond(req, nil)
	}
	if err := Validate(pod); err != nil {
		var rej *RejectedError
		if !errors.As(err, &rej) {
			return respond(req, refuse(http.StatusInternalServerError, err.Error()))
		}
		r := refuse(http.StatusForbidden, err.Error())
		r.Result.Reason = metav1.StatusReasonForbidden
		return respond(req, r)
	}
	return respond(req, nil)
}

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

// decode returns the request and, when it is about a pod with an object, the
// pod with its namespace filled from the request. resp is non-nil when the
// review must be refused.
func decode(review *admissionv1.AdmissionReview) (*admissionv1.AdmissionRequest, *corev1.Pod, *admissionv1.AdmissionResponse) {
	if review == nil || review.Request == nil {
		return nil, nil, refuse(http.StatusBadRequest, "the AdmissionReview has no request")
	}
	req := review.Request
	if req.Resource != podResource || req.SubResource != "" && req.SubResource != "ephemeralcontainers" {
		return req, nil, nil
	}
	if len(req.Object.Raw) == 0 {
		return req, nil, nil // DELETE, CONNECT
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return req, nil, refuse(http.StatusBadRequest, fmt.Sprintf("decoding the pod: %v", err))
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	return req, &pod, nil
}

func refuse(code int32, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: code, Message: msg,
	}}
}

// respond wraps resp (nil = allowed unchanged) in an AdmissionReview of the
// same apiVersion and kind the API server sent, with the request's UID.
func respond(req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) *admissionv1.AdmissionReview {
	if resp == nil {
		resp = &admissionv1.AdmissionResponse{Allowed: true}
	}
	if req != nil {
		resp.UID = req.UID
	}
	return &admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	}
}
