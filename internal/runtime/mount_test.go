package runtime

import (
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

func TestCheckMountsSubPath(t *testing.T) {
	for _, c := range []struct {
		sub string
		ok  bool
	}{
		{"", true}, {"x", true}, {"logs/app", true}, {"a.b/c", true},
		{"/etc", false}, {"..", false}, {"../x", false}, {"x/../..", false},
		{"x/", false}, {"./x", false}, {"x//y", false}, {"x\x00", false}, {".", false},
	} {
		err := CheckMounts("s", ContainerSpec{Name: "app", Mounts: []Mount{{Source: "/vol", Destination: "/d", SubPath: c.sub}}})
		if c.ok && err != nil {
			t.Errorf("sub-path %q: %v", c.sub, err)
		}
		if !c.ok && (!errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "sub-path")) {
			t.Errorf("sub-path %q = %v, want an invalid argument about the sub-path", c.sub, err)
		}
	}
}
