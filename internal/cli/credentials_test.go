package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
)

func exportOf(out, name string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "export "+name+"="); ok {
			return v
		}
	}
	return ""
}

func TestCredentialsVerbs(t *testing.T) {
	e := startVessel(t)
	out, errOut, err := e.vessel(t, "credentials", "create", "ci", "--allow", "ecs:RunTask,ecs:Describe*")
	if err != nil || !strings.Contains(errOut, "policy custom (ecs:RunTask, ecs:Describe*)") {
		t.Fatalf("create: %v\n%s%s", err, out, errOut)
	}
	id, secret := exportOf(out, "AWS_ACCESS_KEY_ID"), exportOf(out, "AWS_SECRET_ACCESS_KEY")
	if id == "" || secret == "" {
		t.Fatalf("create printed no key:\n%s", out)
	}

	list := e.must(t, "credentials", "list")
	if !strings.Contains(list, "ci") || !strings.Contains(list, "custom: ecs:RunTask,ecs:Describe*") || strings.Contains(list, secret) {
		t.Fatalf("list:\n%s", list)
	}
	var keys []agentproto.Credential
	if err := json.Unmarshal([]byte(e.must(t, "credentials", "list", "-o", "json")), &keys); err != nil || len(keys) != 2 {
		t.Fatalf("list -o json: %v %v", keys, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"credentials", "create", "x", "--policy", "root"}, `--policy "root" is not known: use read-only, operator or admin`},
		{[]string{"credentials", "create", "x", "--policy", "admin", "--allow", "ecs:RunTask"}, "none of the others can be"},
		{[]string{"credentials", "create"}, "NAME: who holds the key"},
		{[]string{"credentials", "create", "x", "--allow", "ecs"}, `"ecs" is not of the form service:Action`},
		{[]string{"credentials", "rotate", "nobody"}, `no access key has the ID or name "nobody"`},
		{[]string{"credentials", "delete", e.keys[0].AccessKeyID}, "is the last admin key"},
	} {
		_, _, err := e.vessel(t, tc.args...)
		if err == nil || !strings.Contains(describeError(err), tc.want) {
			t.Errorf("vessel %s: %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}

	// Rotating the local admin key keeps its sealed copy current.
	out, _, err = e.vessel(t, "credentials", "rotate", e.keys[0].AccessKeyID)
	if err != nil {
		t.Fatal(err)
	}
	local, err := auth.Local{DataDir: e.dir}.Load()
	if err != nil || local.SecretAccessKey != exportOf(out, "AWS_SECRET_ACCESS_KEY") || local.SecretAccessKey == e.keys[0].SecretAccessKey {
		t.Fatalf("the local key after rotation: %v", err)
	}
	e.must(t, "credentials", "list") // signs with the new secret

	e.must(t, "credentials", "delete", "ci")
	if list := e.must(t, "credentials", "list"); strings.Contains(list, id) {
		t.Fatalf("list after delete:\n%s", list)
	}
}
