package e2e

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"vessel.dev/vessel/test/fleet"
)

// vesselAs runs a vessel user command signed with the given key.
func (s *server) vesselAs(id, secret string, args ...string) (string, string, int) {
	s.t.Helper()
	return s.vesselWith(s.t.TempDir(), "", id, secret, args...)
}

// filesHolding lists the files under dir that contain s.
func filesHolding(dir, s string) []string {
	var found []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(s)) {
				found = append(found, p)
			}
		}
		return nil
	})
	return found
}

// TestAccessKeys: the first start prints no secret and makes the data
// directory 0700; `vessel credentials` shows the admin key; a read-only
// key cannot RunTask (the real aws CLI); an operator key cannot create
// keys; rotate and delete cut the old secret off; nothing holds a secret
// in clear, neither the files nor the server's log.
func TestAccessKeys(t *testing.T) {
	s := startServer(t, "--no-agent", "--runtimes", "sim")
	st, err := os.Stat(s.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %04o, want 0700", st.Mode().Perm())
	}
	adminID, adminSecret := s.keys()
	if !strings.Contains(s.log.String(), "Created the admin access key "+adminID) || !strings.Contains(s.log.String(), "vessel credentials") {
		t.Errorf("first start does not say where the key is and how to see it:\n%s", s.log)
	}
	if strings.Contains(s.log.String(), adminSecret) || strings.Contains(s.log.String(), "AWS_SECRET_ACCESS_KEY") {
		t.Fatalf("first start printed the secret:\n%s", s.log)
	}

	// read-only: the aws CLI lists, and is refused RunTask as AWS words it.
	out, stderr, code := s.vessel("credentials", "create", "auditor", "--policy", "read-only")
	if code != 0 || !strings.Contains(stderr, "policy read-only") {
		t.Fatalf("credentials create auditor: exit %d\n%s%s", code, out, stderr)
	}
	roID, roSecret := fleet.ExportValue(out, "AWS_ACCESS_KEY_ID"), fleet.ExportValue(out, "AWS_SECRET_ACCESS_KEY")
	env := s.awsEnv("")
	for i, kv := range env {
		switch {
		case strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID="):
			env[i] = "AWS_ACCESS_KEY_ID=" + roID
		case strings.HasPrefix(kv, "AWS_SECRET_ACCESS_KEY="):
			env[i] = "AWS_SECRET_ACCESS_KEY=" + roSecret
		}
	}
	awsRO := func(args ...string) (string, error) {
		cmd := exec.Command("aws", append(args, "--endpoint-url", s.endpoint, "--output", "json")...)
		cmd.Env = env
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := awsRO("ecs", "list-tasks"); err != nil {
		t.Fatalf("aws ecs list-tasks with the read-only key: %v\n%s", err, out)
	}
	out, err = awsRO("ecs", "run-task", "--task-definition", "web:1")
	if err == nil || !strings.Contains(out, "An error occurred (AccessDeniedException) when calling the RunTask operation") ||
		!strings.Contains(out, "User: arn:aws:iam::000000000000:user/auditor is not authorized to perform: ecs:RunTask on resource: arn:aws:ecs:us-east-1:000000000000:task-definition/web:1 because no identity-based policy allows the ecs:RunTask action") {
		t.Fatalf("aws ecs run-task with the read-only key: %v\n%s", err, out)
	}

	// operator: cannot create keys.
	out, stderr, code = s.vessel("credentials", "create", "ops", "--policy", "operator")
	if code != 0 {
		t.Fatalf("credentials create ops: exit %d %s", code, stderr)
	}
	opID, opSecret := fleet.ExportValue(out, "AWS_ACCESS_KEY_ID"), fleet.ExportValue(out, "AWS_SECRET_ACCESS_KEY")
	if _, stderr, code := s.vesselAs(opID, opSecret, "credentials", "create", "mine", "--policy", "admin"); code == 0 ||
		!strings.Contains(stderr, "User: arn:aws:iam::000000000000:user/ops is not authorized to perform: vessel:CreateCredential") {
		t.Fatalf("an operator created a key: exit %d %s", code, stderr)
	}
	if _, stderr, code := s.vesselAs(opID, opSecret, "ps", "-a"); code != 0 {
		t.Fatalf("operator vessel ps: exit %d %s", code, stderr)
	}

	// Validation and the last admin key.
	if _, stderr, code := s.vessel("credentials", "create", "x", "--policy", "root"); code == 0 || !strings.Contains(stderr, "use read-only, operator or admin") {
		t.Errorf("unknown policy: exit %d %s", code, stderr)
	}
	if _, stderr, code := s.vessel("credentials", "create", "x", "--allow", "s3:GetObject"); code == 0 || !strings.Contains(stderr, "accepted services: ecs, eks, vessel") {
		t.Errorf("unknown service: exit %d %s", code, stderr)
	}
	if _, stderr, code := s.vessel("credentials", "delete", "admin"); code == 0 || !strings.Contains(stderr, "last admin key") {
		t.Errorf("deleting the last admin key: exit %d %s", code, stderr)
	}

	// list shows names and policies, never secrets.
	out, _, code = s.vessel("credentials", "list", "-o", "json")
	var keys []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &keys) != nil || len(keys) != 3 {
		t.Fatalf("credentials list: exit %d\n%s", code, out)
	}
	for _, secret := range []string{adminSecret, roSecret, opSecret} {
		if strings.Contains(out, secret) {
			t.Fatal("credentials list shows a secret")
		}
	}

	// rotate: the old secret stops, the new one works; the local admin key
	// follows its rotation.
	out, stderr, code = s.vessel("credentials", "rotate", "ops")
	if code != 0 {
		t.Fatalf("rotate: exit %d %s", code, stderr)
	}
	newSecret := fleet.ExportValue(out, "AWS_SECRET_ACCESS_KEY")
	if _, stderr, code := s.vesselAs(opID, opSecret, "ps"); code == 0 || !strings.Contains(stderr, "InvalidSignatureException") {
		t.Errorf("old secret after rotation: exit %d %s", code, stderr)
	}
	if _, stderr, code := s.vesselAs(opID, newSecret, "ps"); code != 0 {
		t.Errorf("new secret after rotation: exit %d %s", code, stderr)
	}
	if _, stderr, code := s.vessel("credentials", "rotate", "admin"); code != 0 {
		t.Fatalf("rotating the local admin key: exit %d %s", code, stderr)
	}
	if _, stderr, code := s.vessel("ps"); code != 0 {
		t.Fatalf("the CLI after rotating its own key: exit %d %s", code, stderr)
	}
	_, adminSecret2 := s.keys()

	// delete cuts the key off.
	if _, stderr, code := s.vessel("credentials", "delete", opID); code != 0 {
		t.Fatalf("delete: exit %d %s", code, stderr)
	}
	if _, stderr, code := s.vesselAs(opID, newSecret, "ps"); code == 0 || !strings.Contains(stderr, "UnrecognizedClientException") {
		t.Errorf("deleted key: exit %d %s", code, stderr)
	}

	// After a restart the keys are still there, and still sealed.
	s.kill(syscall.SIGTERM)
	s.start()
	if _, stderr, code := s.vesselAs(roID, roSecret, "ps"); code != 0 {
		t.Errorf("read-only key after a restart: exit %d %s", code, stderr)
	}
	if strings.Contains(s.log.String(), "Created the admin access key") {
		t.Errorf("a restart made a new admin key:\n%s", s.log)
	}
	s.kill(syscall.SIGTERM)
	for _, secret := range []string{adminSecret, adminSecret2, roSecret, opSecret, newSecret} {
		if found := filesHolding(s.dataDir, secret); len(found) > 0 {
			t.Errorf("files hold a secret in clear: %v", found)
		}
	}
}

// TestPlaintextCredentialsMigrate: an installation's plaintext
// credentials.json, in a data directory open to all, becomes a sealed
// admin key in the keyring; the file is gone and the directory 0700.
func TestPlaintextCredentialsMigrate(t *testing.T) {
	dir := t.TempDir()
	const id, secret = "AKIAOLDPLAINTEXT0001", "b2xkLXBsYWludGV4dC1zZWNyZXQtb2xkLXBsYWlu"
	legacy := filepath.Join(dir, "credentials.json")
	if err := os.WriteFile(legacy, []byte(`[{"accessKeyId":"`+id+`","secretAccessKey":"`+secret+`"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, dataDir: dir, addr: freeAddr(t), extra: []string{"--no-agent", "--runtimes", "sim"}}
	s.endpoint = "http://" + s.addr
	s.start()
	t.Cleanup(func() { s.kill(syscall.SIGTERM) })
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %04o after start, want 0700", st.Mode().Perm())
	}
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Fatalf("the plaintext credentials file is still there: %v", err)
	}
	gotID, gotSecret := s.keys()
	if gotID != id || gotSecret != secret {
		t.Fatalf("vessel credentials shows %s, want the migrated key %s", gotID, id)
	}
	if strings.Contains(s.log.String(), secret) || strings.Contains(s.log.String(), "Created the admin access key") {
		t.Fatalf("server output:\n%s", s.log)
	}
	out, _, code := s.vessel("credentials", "list")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "admin") {
		t.Fatalf("credentials list:\n%s", out)
	}
	s.kill(syscall.SIGTERM)
	if found := filesHolding(dir, secret); len(found) > 0 {
		t.Fatalf("files hold the migrated secret in clear: %v", found)
	}
}
