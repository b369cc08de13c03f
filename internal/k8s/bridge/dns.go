package bridge

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KubeDNSService is the Service of the cluster's DNS, kube-system/kube-dns,
// whose ClusterIP pods use as their nameserver (as EKS's kubelets do).
const KubeDNSService = "kube-dns"

// clusterDNS returns the cluster's DNS servers for a pod being converted:
// Config.ClusterDNS, else the kube-dns Service's ClusterIP, else none (the
// Service does not exist yet, or is headless). It reads the Service each
// time, so pods created after CoreDNS is installed get it.
func (b *Bridge) clusterDNS(ctx context.Context) ([]string, error) {
	if len(b.cfg.ClusterDNS) > 0 {
		return b.cfg.ClusterDNS, nil
	}
	svc, err := b.kube.CoreV1().Services(metav1.NamespaceSystem).Get(ctx, KubeDNSService, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the %s/%s service: %w", metav1.NamespaceSystem, KubeDNSService, err)
	}
	if ip := svc.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		return []string{ip}, nil
	}
	return nil, nil
}

// nonEmpty is s as a list: none when s is "".
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
