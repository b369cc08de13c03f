package bridge

import (
	"context"
	"fmt"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"vessel.dev/vessel/internal/k8s/admission"
)

// Names of what `vessel k8s install` creates.
const (
	Namespace          = "vessel-system"
	ServiceAccountName = "vessel-bridge"
	ClusterRoleName    = "vessel-bridge"
	MutatingName       = "vessel-pod-mutator"
	ValidatingName     = "vessel-pod-validator"
	MutatePath         = "/mutate-pods"
	ValidatePath       = "/validate-pods"
	LabelManagedBy     = "app.kubernetes.io/managed-by"
	ManagedBy          = "vessel"
)

// RuntimeClasses are the RuntimeClasses install creates; their handler is
// the Vessel runtime of the same name.
var RuntimeClasses = admission.Runtimes

// InstallOptions say where the bridge serves its webhooks.
type InstallOptions struct {
	// WebhookURL is the base URL the API server calls, https://host:port.
	WebhookURL string
	// CABundle is the PEM CA that signs the bridge's serving certificate.
	CABundle []byte
	// Cluster is the Vessel (EKS) cluster the Kubernetes cluster is; it is
	// recorded on the namespace, and a bridge serving another one warns.
	Cluster string
}

// AnnotationCluster records InstallOptions.Cluster on the namespace.
const AnnotationCluster = "vessel.dev/cluster"

// Install creates or updates, idempotently, what the cluster needs for
// the bridge: the vessel-system namespace, the bridge's service account
// and RBAC, the RuntimeClasses and the two pod webhooks.
func Install(ctx context.Context, cs kubernetes.Interface, o InstallOptions) error {
	labels := map[string]string{LabelManagedBy: ManagedBy}
	meta := func(name, ns string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	}
	nsMeta := meta(Namespace, "")
	if o.Cluster != "" {
		nsMeta.Annotations = map[string]string{AnnotationCluster: o.Cluster}
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: nsMeta}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", Namespace, err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta(ServiceAccountName, Namespace)}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account: %w", err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: meta(ClusterRoleName, ""), Rules: bridgeRules()}
	if err := createOrUpdate(ctx, role, cs.RbacV1().ClusterRoles().Create, cs.RbacV1().ClusterRoles().Update,
		func() (*rbacv1.ClusterRole, error) {
			return cs.RbacV1().ClusterRoles().Get(ctx, ClusterRoleName, metav1.GetOptions{})
		},
		func(cur, want *rbacv1.ClusterRole) { cur.Rules = want.Rules }); err != nil {
		return fmt.Errorf("cluster role: %w", err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: meta(ClusterRoleName, ""),
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ClusterRoleName},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: ServiceAccountName, Namespace: Namespace}}}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("cluster role binding: %w", err)
	}
	for _, rc := range RuntimeClasses {
		obj := &nodev1.RuntimeClass{ObjectMeta: meta(rc, ""), Handler: rc,
			Scheduling: &nodev1.Scheduling{
				NodeSelector: map[string]string{"vessel.dev/compute-type": "vessel"},
				Tolerations: []corev1.Toleration{{Key: "vessel.dev/compute-type", Operator: corev1.TolerationOpExists,
					Effect: corev1.TaintEffectNoSchedule}}}}
		if _, err := cs.NodeV1().RuntimeClasses().Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("runtime class %s: %w", rc, err)
		}
	}
	mut, val := webhookConfigs(o)
	if err := createOrUpdate(ctx, mut, cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create,
		cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Update,
		func() (*admissionregv1.MutatingWebhookConfiguration, error) {
			return cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, MutatingName, metav1.GetOptions{})
		},
		func(cur, want *admissionregv1.MutatingWebhookConfiguration) { cur.Webhooks = want.Webhooks }); err != nil {
		return fmt.Errorf("mutating webhook: %w", err)
	}
	if err := createOrUpdate(ctx, val, cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create,
		cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update,
		func() (*admissionregv1.ValidatingWebhookConfiguration, error) {
			return cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, ValidatingName, metav1.GetOptions{})
		},
		func(cur, want *admissionregv1.ValidatingWebhookConfiguration) { cur.Webhooks = want.Webhooks }); err != nil {
		return fmt.Errorf("validating webhook: %w", err)
	}
	return nil
}

// Uninstall removes everything Install created; what is already gone is
// not an error. Pods the bridge runs are left to the caller.
func Uninstall(ctx context.Context, cs kubernetes.Interface) error {
	ignore := func(err error) error {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	del := metav1.DeleteOptions{}
	steps := []func() error{
		func() error {
			return cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, MutatingName, del)
		},
		func() error {
			return cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, ValidatingName, del)
		},
		func() error { return cs.RbacV1().ClusterRoleBindings().Delete(ctx, ClusterRoleName, del) },
		func() error { return cs.RbacV1().ClusterRoles().Delete(ctx, ClusterRoleName, del) },
		func() error { return cs.CoreV1().Namespaces().Delete(ctx, Namespace, del) },
	}
	for _, rc := range RuntimeClasses {
		steps = append(steps, func() error { return cs.NodeV1().RuntimeClasses().Delete(ctx, rc, del) })
	}
	for _, step := range steps {
		if err := ignore(step()); err != nil {
			return err
		}
	}
	return nil
}

// bridgeRules are the permissions the bridge needs.
func bridgeRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch", "update", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"get", "patch", "update"}},
		{APIGroups: []string{""}, Resources: []string{"pods/binding", "bindings"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"nodes", "nodes/status"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps", "secrets", "services"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}},
		{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"},
			Verbs: []string{"get", "list", "update", "patch"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{"node.k8s.io"}, Resources: []string{"runtimeclasses"}, Verbs: []string{"get", "list", "watch"}},
	}
}

// webhookConfigs returns the two webhook configurations. The mutating
// webhook sees every pod creation and fails open: when the bridge is down
// pods are created unchanged, and the bridge's scheduler picks up those a
// profile matches later. The validating webhook sees only pods a profile
// took (the label the mutating webhook sets, which runs first) and fails
// closed, so that nothing unsafe reaches a sandbox.
func webhookConfigs(o InstallOptions) (*admissionregv1.MutatingWebhookConfiguration, *admissionregv1.ValidatingWebhookConfiguration) {
	none := admissionregv1.SideEffectClassNone
	ignore, fail := admissionregv1.Ignore, admissionregv1.Fail
	timeout := int32(5)
	rules := []admissionregv1.RuleWithOperations{{
		Operations: []admissionregv1.OperationType{admissionregv1.Create},
		Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
			Scope: ptr(admissionregv1.NamespacedScope)},
	}}
	notOurs := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{Namespace}}}}
	mutURL, valURL := o.WebhookURL+MutatePath, o.WebhookURL+ValidatePath
	labels := map[string]string{LabelManagedBy: ManagedBy}
	mut := &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: MutatingName, Labels: labels},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name:                    "pods.mutate.vessel.dev",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &mutURL, CABundle: o.CABundle},
			Rules:                   rules,
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          &timeout,
			NamespaceSelector:       notOurs,
			ReinvocationPolicy:      ptr(admissionregv1.NeverReinvocationPolicy),
		}},
	}
	// Pods are checked when created, and again when ephemeral containers
	// are added (an update of that subresource); other updates cannot
	// change what the validation looks at.
	valRules := []admissionregv1.RuleWithOperations{rules[0], {
		Operations: []admissionregv1.OperationType{admissionregv1.Update},
		Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
			Resources: []string{"pods/ephemeralcontainers"}, Scope: ptr(admissionregv1.NamespacedScope)},
	}}
	val := &admissionregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: ValidatingName, Labels: labels},
		Webhooks: []admissionregv1.ValidatingWebhook{{
			Name:                    "pods.validate.vessel.dev",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &valURL, CABundle: o.CABundle},
			Rules:                   valRules,
			FailurePolicy:           &fail,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          &timeout,
			NamespaceSelector:       notOurs,
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: admission.LabelFargateProfile, Operator: metav1.LabelSelectorOpExists}}},
		}},
	}
	return mut, val
}

// createOrUpdate creates obj, or when it exists copies want's content into
// the stored object with set and updates it.
func createOrUpdate[T any](ctx context.Context, obj *T,
	create func(context.Context, *T, metav1.CreateOptions) (*T, error),
	update func(context.Context, *T, metav1.UpdateOptions) (*T, error),
	get func() (*T, error), set func(cur, want *T)) error {
	if _, err := create(ctx, obj, metav1.CreateOptions{}); err == nil || !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur, err := get()
	if err != nil {
		return err
	}
	set(cur, obj)
	_, err = update(ctx, cur, metav1.UpdateOptions{})
	return err
}

func ptr[T any](v T) *T { return &v }
