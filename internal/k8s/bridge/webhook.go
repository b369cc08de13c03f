package bridge

import (
	"context"
	"encoding/json"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/k8s/admission"
	"vessel.dev/vessel/internal/task"
)

// maxReviewBytes bounds an AdmissionReview body (pods are small; the API
// server's own limit on objects is 3 MiB).
const maxReviewBytes = 4 << 20

// reviewHandler serves one admission webhook: it decodes the
// AdmissionReview, answers with decide's review, and never fails the HTTP
// exchange for a bad review (the review answer says what was wrong).
// controller-runtime's webhook.Admission would decode into its own request
// type; the decisions in internal/k8s/admission work on AdmissionReview
// directly, so the handler is registered as a plain http.Handler on
// controller-runtime's webhook server, which does TLS and certificate
// reloading.
func reviewHandler(decide func(context.Context, *admissionv1.AdmissionReview) *admissionv1.AdmissionReview) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "admission reviews are POSTed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
		if err != nil || len(body) > maxReviewBytes {
			http.Error(w, "cannot read the review (at most 4 MiB)", http.StatusBadRequest)
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil {
			http.Error(w, "the body is not an AdmissionReview: "+err.Error(), http.StatusBadRequest)
			return
		}
		out := decide(r.Context(), &review)
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
}

// mutate answers the mutating webhook with the cluster's active profiles.
func (b *Bridge) mutate(ctx context.Context, review *admissionv1.AdmissionReview) *admissionv1.AdmissionReview {
	profiles, err := b.activeProfiles(ctx)
	if err != nil {
		b.log.Error("webhook: reading profiles", "err", err)
		// Failing open: the pod is created unchanged and the scheduler
		// picks it up once the profiles can be read again.
		profiles = nil
	}
	return admission.HandleMutate(review, profiles)
}

func (b *Bridge) validate(_ context.Context, review *admissionv1.AdmissionReview) *admissionv1.AdmissionReview {
	return admission.HandleValidate(review)
}

// activeProfiles returns the cluster's ACTIVE profiles in the webhook's
// terms.
func (b *Bridge) activeProfiles(ctx context.Context) ([]admission.Profile, error) {
	ps, err := b.cfg.ControlPlane.FargateProfiles(ctx, b.cfg.Cluster)
	if err != nil {
		return nil, err
	}
	return activeOf(ps), nil
}

// activeOf keeps the ACTIVE profiles; a profile's default runtime is its
// vessel:runtime tag.
func activeOf(ps []agentproto.FargateProfile) []admission.Profile {
	out := make([]admission.Profile, 0, len(ps))
	for _, p := range ps {
		if p.Status != statusActive {
			continue
		}
		out = append(out, admission.Profile{Name: p.Name, Selectors: p.Selectors, Subnets: p.Subnets,
			Runtime: p.Tags[task.TagRuntime]})
	}
	return out
}

const statusActive = "ACTIVE"
