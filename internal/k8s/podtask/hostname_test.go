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
