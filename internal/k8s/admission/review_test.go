package admission

import (
	"encoding/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func review(op admissionv1.Operation, ns string, obj any, mod ...func(*admissionv1.AdmissionRequest)) *admissionv1.AdmissionReview {
	req := &admissionv1.AdmissionRequest{
		UID:       types.UID("uid-1"),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: ns,
		Operation: op,
	}
	switch o := obj.(type) {
	case nil:
	case []byte:
		req.Object = runtime.RawExtension{Raw: o}
	default:
		raw, _ := json.Marshal(o)
		req.Object = runtime.RawExtension{Raw: raw}
	}
	for _, m := range mod {
		m(req)
	}
	return &admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	}
}

func TestHandleMutate(t *testing.T) {
	generated := newPod("") // namespace only in the request, as for generateName pods
	tests := []struct {
		name      string
		review    *admissionv1.AdmissionReview
		allowed   bool
		code      int32
		wantPatch string // substring of the patch; "" = no patch
	}{
		{"pod taken", review(admissionv1.Create, "default", newPod("default")), true, 0, `"vessel-scheduler"`},
		{"namespace from the request", review(admissionv1.Create, "default", generated), true, 0, `"zeta"`},
		{"pod matching nothing", review(admissionv1.Create, "other", newPod("other")), true, 0, ""},
		{"update is not mutated", review(admissionv1.Update, "default", newPod("default")), true, 0, ""},
		{"other resource", review(admissionv1.Create, "default", newPod("default"), func(r *admissionv1.AdmissionRequest) {
			r.Resource = metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
		}), true, 0, ""},
		{"binding subresource", review(admissionv1.Create, "default", newPod("default"), func(r *admissionv1.AdmissionRequest) {
			r.SubResource = "binding"
		}), true, 0, ""},
		{"undecodable pod", review(admissionv1.Create, "default", []byte(`{"spec":`)), false, 400, ""},
		{"no request", &admissionv1.AdmissionReview{}, false, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := HandleMutate(tt.review, testProfiles)
			checkResponse(t, tt.review, out, tt.allowed, tt.code)
			r := out.Response
			if tt.wantPatch == "" {
				if r.Patch != nil || r.PatchType != nil {
					t.Errorf("unexpected patch %s", r.Patch)
				}
				return
			}
			if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Errorf("patchType = %v", r.PatchType)
			}
			var ops []JSONPatchOp
			if err := json.Unmarshal(r.Patch, &ops); err != nil || len(ops) == 0 {
				t.Fatalf("patch %s: %v", r.Patch, err)
			}
			if !strings.Contains(string(r.Patch), tt.wantPatch) {
				t.Errorf("patch %s does not contain %s", r.Patch, tt.wantPatch)
			}
		})
	}
}

func TestHandleValidate(t *testing.T) {
	bad := vesselPod(privileged)
	tests := []struct {
		name    string
		review  *admissionv1.AdmissionReview
		allowed bool
		code    int32
		msg     string
	}{
		{"good pod", review(admissionv1.Create, "default", vesselPod()), true, 0, ""},
		{"privileged pod", review(admissionv1.Create, "default", bad), false, 403,
			"Pod not supported on Fargate: invalid SecurityContext fields: Privileged"},
		{"ephemeral container update", review(admissionv1.Update, "default", bad, func(r *admissionv1.AdmissionRequest) {
			r.SubResource = "ephemeralcontainers"
		}), false, 403, "Privileged"},
		{"other scheduler", review(admissionv1.Create, "default", newPod("default", privileged)), true, 0, ""},
		{"delete", review(admissionv1.Delete, "default", nil), true, 0, ""},
		{"undecodable pod", review(admissionv1.Create, "default", []byte(`[]`)), false, 400, "decoding the pod"},
		{"no request", &admissionv1.AdmissionReview{}, false, 400, "no request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := HandleValidate(tt.review)
			checkResponse(t, tt.review, out, tt.allowed, tt.code)
			if tt.msg != "" && !strings.Contains(out.Response.Result.Message, tt.msg) {
				t.Errorf("message %q does not contain %q", out.Response.Result.Message, tt.msg)
			}
			if tt.code == 403 && out.Response.Result.Reason != metav1.StatusReasonForbidden {
				t.Errorf("reason = %q", out.Response.Result.Reason)
			}
		})
	}
}

func checkResponse(t *testing.T, in, out *admissionv1.AdmissionReview, allowed bool, code int32) {
	t.Helper()
	if out == nil || out.Response == nil {
		t.Fatal("no response")
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
		t.Errorf("type meta = %+v", out.TypeMeta)
	}
	if in.Request != nil && out.Response.UID != in.Request.UID {
		t.Errorf("uid = %q, want %q", out.Response.UID, in.Request.UID)
	}
	if out.Response.Allowed != allowed {
		t.Errorf("allowed = %v, want %v (%+v)", out.Response.Allowed, allowed, out.Response.Result)
	}
	if code != 0 && (out.Response.Result == nil || out.Response.Result.Code != code) {
		t.Errorf("result = %+v, want code %d", out.Response.Result, code)
	}
	if out.Request != nil {
		t.Error("response carries the request")
	}
}
