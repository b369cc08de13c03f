package podtask

import (
	"errors"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

// TestConvertHostname: the task's hostname is the kubelet's for the pod:
// spec.hostname, else the pod's name, cut to 63 characters without a
// trailing '-' or '.'.
func TestConvertHostname(t *testing.T) {
	long := strings.Repeat("a", 62) + "-b" + strings.Repeat("c", 10) // the cut ends in '-'
	for _, c := range []struct {
		name, specHostname, want string
	}{
		{name: "web-1", want: "web-1"},
		{name: "web-1", specHostname: "db-0", want: "db-0"},
		{name: "web.v1", want: "web.v1"},
		{name: long, want: strings.Repeat("a", 62)},
		{name: strings.Repeat("d", 62) + ".e", want: strings.Repeat("d", 62)},
		{name: strings.Repeat("f", 70), want: strings.Repeat("f", 63)},
	} {
		pod := basePod()
		pod.Name, pod.Spec.Hostname = c.name, c.specHostname
		got, err := Convert(pod, baseInputs())
		if err != nil {
			t.Errorf("pod %q: %v", c.name, err)
		} else if got.Hostname != c.want {
			t.Errorf("pod %q (spec.hostname %q): hostname %q, want %q", c.name, c.specHostname, got.Hostname, c.want)
		}
	}
	// The API server refuses such a name; the conversion says why too.
	pod := basePod()
	pod.Spec.Hostname = "db_0"
	if _, err := Convert(pod, baseInputs()); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `hostname "db_0" is not accepted`) {
		t.Errorf("spec.hostname db_0: %v, want an invalid argument naming it", err)
	}
}

// TestConvertSubdomain: spec.subdomain qualifies the hostname with
// <subdomain>.<namespace>.svc.<cluster domain> (Task.HostDomain), as the
// kubelet's /etc/hosts does; with setHostnameAsFQDN the hostname is that
// fully qualified name, refused beyond 64 characters as the kubelet does.
func TestConvertSubdomain(t *testing.T) {
	yes := true
	for _, c := range []struct {
		name, specHostname, subdomain, clusterDomain string
		fqdn                                         bool
		wantHost, wantDomain                         string
	}{
		{name: "web-0", subdomain: "nginx", wantHost: "web-0", wantDomain: "nginx.shop.svc.cluster.local"},
		{name: "web-0", specHostname: "db-0", subdomain: "nginx", clusterDomain: "example.org.", wantHost: "db-0", wantDomain: "nginx.shop.svc.example.org"},
		{name: "web-0", subdomain: "nginx", fqdn: true, wantHost: "web-0.nginx.shop.svc.cluster.local"},
		{name: "web-0", fqdn: true, wantHost: "web-0"}, // no subdomain: nothing to qualify
	} {
		pod := basePod()
		pod.Name, pod.Spec.Hostname, pod.Spec.Subdomain = c.name, c.specHostname, c.subdomain
		if c.fqdn {
			pod.Spec.SetHostnameAsFQDN = &yes
		}
		in := baseInputs()
		in.ClusterDomain = c.clusterDomain
		got, err := Convert(pod, in)
		if err != nil {
			t.Errorf("pod %q (subdomain %q): %v", c.name, c.subdomain, err)
		} else if got.Hostname != c.wantHost || got.HostDomain != c.wantDomain {
			t.Errorf("pod %q (subdomain %q, setHostnameAsFQDN %v): hostname %q domain %q, want %q %q",
				c.name, c.subdomain, c.fqdn, got.Hostname, got.HostDomain, c.wantHost, c.wantDomain)
		}
	}
	pod := basePod()
	pod.Name, pod.Spec.Subdomain, pod.Spec.SetHostnameAsFQDN = strings.Repeat("w", 37), "nginx", &yes
	if _, err := Convert(pod, baseInputs()); !errors.Is(err, errdefs.ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "is too long (64 characters is the max, 66 characters requested)") {
		t.Errorf("a 66-character FQDN as hostname: %v, want the kubelet's refusal", err)
	}
	pod.Spec.Subdomain = "my_svc"
	pod.Spec.SetHostnameAsFQDN = nil
	if _, err := Convert(pod, baseInputs()); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "spec.subdomain") {
		t.Errorf("subdomain my_svc: %v, want an invalid argument naming it", err)
	}
}
