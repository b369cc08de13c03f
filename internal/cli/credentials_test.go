package cli

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/store/bolt"
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

// TestOpenKeyringNamesTheEncryptionKeyFlag: a server given another
// encryption key than the one that sealed the store's keys stops at start
// with an error naming the file it was given and --encryption-key-file.
func TestOpenKeyringNamesTheEncryptionKeyFlag(t *testing.T) {
	ctx := t.Context()
	st, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	first := auth.Local{DataDir: t.TempDir()}
	if _, k, _, err := openKeyring(ctx, first, st, slog.New(slog.DiscardHandler)); err != nil || k.AccessKeyID == "" {
		t.Fatalf("first start: %v", err)
	}
	for name, local := range map[string]auth.Local{
		"own data directory":  {DataDir: t.TempDir()},
		"same data directory": {DataDir: first.DataDir, MasterKeyFile: filepath.Join(t.TempDir(), "other.key")},
	} {
		_, _, _, err := openKeyring(ctx, local, st, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "--encryption-key-file") || !strings.Contains(err.Error(), local.MasterKeyPath()) {
			t.Errorf("%s: openKeyring with another encryption key: %v; want an error naming --encryption-key-file and %s", name, err, local.MasterKeyPath())
		}
	}
}

// TestKeyFileRecorded: a server given --encryption-key-file records it in
// its data directory, so that the CLI given only the data directory opens
// the local admin key with it (`vessel credentials --data-dir` on a
// replica whose key file lives elsewhere); the flag still wins.
func TestKeyFileRecorded(t *testing.T) {
	st, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dir := t.TempDir()
	server := auth.Local{DataDir: dir, MasterKeyFile: filepath.Join(t.TempDir(), "encryption.key")}
	_, k, _, err := openKeyring(t.Context(), server, st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	g := &globals{dataDir: dir}
	if got := g.local().MasterKeyPath(); got != server.MasterKeyFile {
		t.Fatalf("the CLI given only --data-dir uses master key %s, want the server's %s", got, server.MasterKeyFile)
	}
	if got, err := g.local().Load(); err != nil || got.AccessKeyID != k.AccessKeyID {
		t.Fatalf("the CLI loads %s, %v; want %s", got.AccessKeyID, err, k.AccessKeyID)
	}
	g.masterKeyFile = filepath.Join(t.TempDir(), "flag.key")
	if got := g.local().MasterKeyPath(); got != g.masterKeyFile {
		t.Errorf("with --encryption-key-file the CLI uses %s, want the flag's %s", got, g.masterKeyFile)
	}
	if got := (&globals{dataDir: t.TempDir()}).local().MasterKeyPath(); filepath.Base(got) != auth.MasterKeyFile {
		t.Errorf("without a record the CLI uses %s, want DATA_DIR/%s", got, auth.MasterKeyFile)
	}
}
