package bridge

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestClusterDNS(t *testing.T) {
	kubeDNS := func(ip string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: KubeDNSService, Namespace: metav1.NamespaceSystem},
			Spec: corev1.ServiceSpec{ClusterIP: ip}}
	}
	tests := []struct {
		name   string
		config []string
		svc    *corev1.Service
		want   []string
	}{
		{name: "the kube-dns Service", svc: kubeDNS("10.96.0.10"), want: []string{"10.96.0.10"}},
		{name: "no kube-dns Service yet", want: nil},
		{name: "a headless kube-dns", svc: kubeDNS(corev1.ClusterIPNone), want: nil},
		{name: "the configuration wins", config: []string{"10.100.0.10"}, svc: kubeDNS("10.96.0.10"), want: []string{"10.100.0.10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := fake.NewClientset()
			if tt.svc != nil {
				kube = fake.NewClientset(tt.svc)
			}
			b := &Bridge{cfg: Config{ClusterDNS: tt.config}, kube: kube}
			got, err := b.clusterDNS(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("clusterDNS = %v, want %v", got, tt.want)
			}
		})
	}
}
