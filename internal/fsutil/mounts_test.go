package fsutil

import "testing"

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{
		"/plain":            "/plain",
		`/with\040space`:    "/with space",
		`/tab\011and\134bs`: "/tab\tand\\bs",
		`/not\09octal`:      `/not\09octal`,
	} {
		if got := UnescapeMountPath(in); got != want {
			t.Errorf("UnescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountsUnderFindsProc(t *testing.T) {
	if got := MountsUnder("/proc"); len(got) == 0 || got[0] != "/proc" {
		t.Errorf("MountsUnder(/proc) = %v, want /proc first", got)
	}
}
