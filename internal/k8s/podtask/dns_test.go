package podtask

import (
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

func TestDNS(t *testing.T) {
	clusterSearches := []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"}
	tests := []struct {
		name     string
		policy   corev1.DNSPolicy
		hostNet  bool
		config   *corev1.PodDNSConfig
		dns      []string
		domain   string
		want     *task.DNSConfig
		wantKind error
	}{
		{name: "default policy is ClusterFirst", dns: []string{"10.96.0.10"},
			want: &task.DNSConfig{Nameservers: []string{"10.96.0.10"}, Searches: clusterSearches, Options: []string{"ndots:5"}}},
		{name: "ClusterFirst with a domain", policy: corev1.DNSClusterFirst, dns: []string{"10.100.0.10"}, domain: "corp.example.",
			want: &task.DNSConfig{Nameservers: []string{"10.100.0.10"},
				Searches: []string{"shop.svc.corp.example", "svc.corp.example", "corp.example"}, Options: []string{"ndots:5"}}},
		{name: "ClusterFirst without cluster DNS is Default", policy: corev1.DNSClusterFirst, want: nil},
		{name: "ClusterFirst with host network is Default", policy: corev1.DNSClusterFirst, hostNet: true, dns: []string{"10.96.0.10"}, want: nil},
		{name: "ClusterFirstWithHostNet", policy: corev1.DNSClusterFirstWithHostNet, hostNet: true, dns: []string{"10.96.0.10"},
			want: &task.DNSConfig{Nameservers: []string{"10.96.0.10"}, Searches: clusterSearches, Options: []string{"ndots:5"}}},
		{name: "Default", policy: corev1.DNSDefault, dns: []string{"10.96.0.10"}, want: nil},
		{name: "Default with dnsConfig", policy: corev1.DNSDefault, dns: []string{"10.96.0.10"},
			config: &corev1.PodDNSConfig{Searches: []string{"corp.example"}, Options: []corev1.PodDNSConfigOption{{Name: "edns0"}}},
			want:   &task.DNSConfig{Searches: []string{"corp.example"}, Options: []string{"edns0"}}},
		{name: "None", policy: corev1.DNSNone, dns: []string{"10.96.0.10"},
			config: &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.example", "a.example"},
				Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("2")}}},
			want: &task.DNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.example"}, Options: []string{"ndots:2"}}},
		{name: "None without dnsConfig", policy: corev1.DNSNone, want: &task.DNSConfig{}},
		{name: "ClusterFirst merges dnsConfig", dns: []string{"10.96.0.10"},
			config: &corev1.PodDNSConfig{Nameservers: []string{"10.96.0.10", "8.8.8.8"}, Searches: []string{"svc.cluster.local", "corp.example"},
				Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("1")}, {Name: "edns0"}}},
			want: &task.DNSConfig{Nameservers: []string{"10.96.0.10", "8.8.8.8"},
				Searches: append(append([]string(nil), clusterSearches...), "corp.example"), Options: []string{"ndots:1", "edns0"}}},
		{name: "nameservers beyond three are dropped", dns: []string{"10.96.0.10"},
			config: &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1", "2.2.2.2", "3.3.3.3"}},
			want:   &task.DNSConfig{Nameservers: []string{"10.96.0.10", "1.1.1.1", "2.2.2.2"}, Searches: clusterSearches, Options: []string{"ndots:5"}}},
		{name: "a nameserver that is not an IP", policy: corev1.DNSNone,
			config: &corev1.PodDNSConfig{Nameservers: []string{"dns.example"}}, wantKind: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := basePod()
			pod.Spec.DNSPolicy, pod.Spec.HostNetwork, pod.Spec.DNSConfig = tt.policy, tt.hostNet, tt.config
			in := baseInputs()
			in.ClusterDNS, in.ClusterDomain = tt.dns, tt.domain
			got, err := Convert(pod, in)
			if tt.wantKind != nil {
				if !errors.Is(err, tt.wantKind) {
					t.Fatalf("err %v, want %v", err, tt.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.DNS, tt.want) {
				t.Errorf("DNS %+v, want %+v", got.DNS, tt.want)
			}
		})
	}
}

// TestDNSKeepsInputs checks that Convert does not write into Inputs.ClusterDNS.
func TestDNSKeepsInputs(t *testing.T) {
	pod := basePod()
	pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}}
	in := baseInputs()
	in.ClusterDNS = make([]string, 1, 4)
	in.ClusterDNS[0] = "10.96.0.10"
	if _, err := Convert(pod, in); err != nil {
		t.Fatal(err)
	}
	if got := in.ClusterDNS[:2]; got[1] != "" {
		t.Errorf("Convert wrote into the caller's ClusterDNS: %v", got)
	}
}
