package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestStoreFlagsRejected checks the answers to store flags that cannot
// work, given before anything starts or connects.
func TestStoreFlagsRejected(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"server", "--etcd-prefix", "/other/"}, "--etcd-prefix is given without --etcd"},
		{[]string{"server", "--etcd-cacert", "ca.pem"}, "--etcd-cacert is given without --etcd"},
		{[]string{"server", "--etcd", "http://127.0.0.1:1", "--etcd-prefix", "/vessel"}, `must be UTF-8 and end with "/"`},
		{[]string{"server", "--etcd", "http://127.0.0.1:1", "--etcd-cert", "c.pem"}, "give both or neither"},
		{[]string{"store", "migrate", "--etcd", "http://127.0.0.1:1"}, "--from is empty"},
		{[]string{"store", "migrate", "--from", empty}, "--etcd is empty"},
		{[]string{"store", "migrate", "--from", empty, "--etcd", "http://127.0.0.1:1"}, "no store there"},
	} {
		root := NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(tc.args, "--data-dir", t.TempDir()))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vessel %s: %v, want an error saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
