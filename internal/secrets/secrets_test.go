package secrets_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/secrets"
	"vessel.dev/vessel/internal/store/bolt"
)

// fixture is a Service on a real bbolt file with a clock the test moves.
type fixture struct {
	svc    *secrets.Service
	dbPath string
	st     *bolt.Store
	now    time.Time
	logs   *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dbPath: filepath.Join(dir, "vessel.db"), now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), logs: &bytes.Buffer{}}
	st, err := bolt.Open(bolt.Config{Path: f.dbPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.st = st
	sealer, created, err := auth.LoadMasterKey(filepath.Join(dir, secrets.KeyFile), true)
	if err != nil || !created {
		t.Fatalf("LoadMasterKey: created %v, %v", created, err)
	}
	f.svc, err = secrets.New(secrets.Config{Store: st, Sealer: sealer, Region: "us-east-1", AccountID: "123456789012",
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func ptr[T any](v T) *T { return &v }

// TestValuesSealedAtRest: the values of secrets (every version) and of
// parameters (String and SecureString) are found nowhere in the store's
// file, nor in what the service logs, while each reads back through the
// API; the key file is mode 0600.
func TestValuesSealedAtRest(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	values := []string{"sm-first-value-8f3a1c", "sm-second-value-77d0e2", "ssm-secure-value-1b9c44", "ssm-plain-value-c0ffee"}
	created, err := f.svc.CreateSecret(ctx, &secrets.CreateSecretInput{Name: ptr("db/password"), SecretString: &values[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.PutSecretValue(ctx, &secrets.PutSecretValueInput{SecretId: &created.ARN, SecretString: &values[1]}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.PutParameter(ctx, &secrets.PutParameterInput{Name: ptr("/app/token"), Value: &values[2], Type: ptr("SecureString")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.PutParameter(ctx, &secrets.PutParameterInput{Name: ptr("/app/plain"), Value: &values[3], Type: ptr("String")}); err != nil {
		t.Fatal(err)
	}
	for i, stage := range []string{"AWSPREVIOUS", "AWSCURRENT"} {
		got, err := f.svc.GetSecretValue(ctx, &secrets.GetSecretValueInput{SecretId: ptr("db/password"), VersionStage: &stage})
		if err != nil || got.SecretString == nil || *got.SecretString != values[i] {
			t.Fatalf("GetSecretValue %s = %+v, %v; want the value put %d", stage, got, err, i)
		}
	}
	if p, err := f.svc.GetParameter(ctx, &secrets.GetParameterInput{Name: ptr("/app/token"), WithDecryption: ptr(true)}); err != nil || p.Parameter.Value != values[2] {
		t.Fatalf("GetParameter WithDecryption = %+v, %v", p, err)
	}
	if p, err := f.svc.GetParameter(ctx, &secrets.GetParameterInput{Name: ptr("/app/token")}); err != nil || p.Parameter.Value == values[2] {
		t.Fatalf("GetParameter without decryption gave the value in clear (%v)", err)
	}
	f.st.Close()
	db, err := os.ReadFile(f.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(db, []byte("db/password")) {
		t.Fatalf("the store's file does not hold the secret's name: is this the right file?")
	}
	for _, v := range values {
		if bytes.Contains(db, []byte(v)) {
			t.Errorf("the store's file holds value %q in clear", v)
		}
		if strings.Contains(f.logs.String(), v) {
			t.Errorf("the log holds value %q", v)
		}
	}
	st, err := os.Stat(filepath.Join(filepath.Dir(f.dbPath), secrets.KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
}

// TestSealedValueBoundToItsRecord: a sealed value copied into another
// secret's record does not open there.
func TestSealedValueBoundToItsRecord(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if _, err := f.svc.CreateSecret(ctx, &secrets.CreateSecretInput{Name: ptr("a"), SecretString: ptr("value-of-a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.CreateSecret(ctx, &secrets.CreateSecretInput{Name: ptr("b"), SecretString: ptr("value-of-b")}); err != nil {
		t.Fatal(err)
	}
	a, _ := f.st.Get(ctx, secrets.Prefix+"a")
	b, _ := f.st.Get(ctx, secrets.Prefix+"b")
	// Give b a's sealed value, keeping b's ARN and version.
	sealedOf := func(data []byte) string {
		s := string(data)
		i := strings.Index(s, `"sealed":"`) + len(`"sealed":"`)
		return s[i : i+strings.Index(s[i:], `"`)]
	}
	swapped := strings.Replace(string(b.Value), sealedOf(b.Value), sealedOf(a.Value), 1)
	if _, err := f.st.Put(ctx, secrets.Prefix+"b", []byte(swapped), b.Revision); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.GetSecretValue(ctx, &secrets.GetSecretValueInput{SecretId: ptr("b")})
	if err == nil || secrets.Code(err) != "InternalServiceError" || strings.Contains(err.Error(), "value-of") {
		t.Fatalf("GetSecretValue of b with a's sealed value: %v; want InternalServiceError naming no value", err)
	}
}

// TestSecretVersionsAndStages: AWSCURRENT moves to each new value, the one
// before becomes AWSPREVIOUS, versions read by ID and stage, a retried
// token is idempotent and a reused token with another value is refused.
func TestSecretVersionsAndStages(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	tok1, tok2, tok3 := strings.Repeat("1", 32), strings.Repeat("2", 32), strings.Repeat("3", 32)
	c, err := f.svc.CreateSecret(ctx, &secrets.CreateSecretInput{Name: ptr("s"), SecretString: ptr("v1"), ClientRequestToken: &tok1})
	if err != nil || *c.VersionId != tok1 || !strings.HasPrefix(c.ARN, "arn:aws:secretsmanager:us-east-1:123456789012:secret:s-") || len(c.ARN) != len("arn:aws:secretsmanager:us-east-1:123456789012:secret:s-")+6 {
		t.Fatalf("CreateSecret = %+v, %v", c, err)
	}
	// The same call again answers as the first.
	if again, err := f.svc.CreateSecret(ctx, &secrets.CreateSecretInput{Name: ptr("s"), SecretString: ptr("v1"), ClientRequestToken: &tok1}); err != nil || again.ARN != c.ARN {
		t.Fatalf("CreateSecret retried = %+v, %v", again, err)
	}
	if _, err := f.svc.CreateSecret(ctx, &secrets.CreateSecretInput{Name: ptr("s"), SecretString: ptr("other")}); secrets.Code(err) != "ResourceExistsException" {
		t.Fatalf("CreateSecret of an existing name: %v; want ResourceExistsException", err)
	}
	if _, err := f.svc.PutSecretValue(ctx, &secrets.PutSecretValueInput{SecretId: ptr("s"), SecretString: ptr("v2"), ClientRequestToken: &tok2}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.UpdateSecret(ctx, &secrets.UpdateSecretInput{SecretId: &c.ARN, SecretString: ptr("v3"), ClientRequestToken: &tok3, Description: ptr("d")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.PutSecretValue(ctx, &secrets.PutSecretValueInput{SecretId: ptr("s"), SecretString: ptr("changed"), ClientRequestToken: &tok2}); secrets.Code(err) != "ResourceExistsException" {
		t.Fatalf("PutSecretValue reusing a token with another value: %v; want ResourceExistsException", err)
	}
	d, err := f.svc.DescribeSecret(ctx, &secrets.DescribeSecretInput{SecretId: ptr(strings.TrimSuffix(c.ARN, c.ARN[len(c.ARN)-7:]))})
	if err != nil {
		t.Fatalf("DescribeSecret by partial ARN: %v", err)
	}
	want := map[string]string{tok1: "", tok2: "AWSPREVIOUS", tok3: "AWSCURRENT"}
	for id, stage := range want {
		got := strings.Join(d.VersionIdsToStages[id], ",")
		if got != stage {
			t.Errorf("version %s has stages %q, want %q", id[:1], got, stage)
		}
	}
	for _, tc := range []struct {
		id, stage *string
		want      string
		code      string
	}{
		{want: "v3"},
		{stage: ptr("AWSPREVIOUS"), want: "v2"},
		{id: &tok1, want: "v1"},
		{id: &tok3, stage: ptr("AWSCURRENT"), want: "v3"},
		{id: &tok1, stage: ptr("AWSCURRENT"), code: "InvalidParameterException"},
		{id: ptr(strings.Repeat("9", 32)), code: "ResourceNotFoundException"},
		{stage: ptr("NOPE"), code: "ResourceNotFoundException"},
	} {
		got, err := f.svc.GetSecretValue(ctx, &secrets.GetSecretValueInput{SecretId: ptr("s"), VersionId: tc.id, VersionStage: tc.stage})
		switch {
		case tc.code != "" && secrets.Code(err) != tc.code:
			t.Errorf("GetSecretValue(%v, %v): %v; want %s", tc.id != nil, tc.stage, err, tc.code)
		case tc.code == "" && (err != nil || *got.SecretString != tc.want):
			t.Errorf("GetSecretValue(%v, %v) = %v; want %s", tc.id != nil, tc.stage, err, tc.want)
		}
	}
}

// TestDeleteAndRestore: a recovery window of 7 to 30 days, the secret
// unreadable while scheduled, restored, and gone once the window is over;
// ForceDeleteWithoutRecovery deletes at once and its name is free again.
func TestDeleteAndRestore(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if _, err := f.svc.CreateSecret(ctx, &secrets.CreateSecretInput{Name: ptr("s"), SecretString: ptr("v")}); err != nil {
		t.Fatal(err)
	}
	for _, in := range []secrets.DeleteSecretInput{
		{SecretId: ptr("s"), RecoveryWindowInDays: ptr(int64(6))},
		{SecretId: ptr("s"), RecoveryWindowInDays: ptr(int64(31))},
		{SecretId: ptr("s"), RecoveryWindowInDays: ptr(int64(7)), ForceDeleteWithoutRecovery: ptr(true)},
	} {
		if _, err := f.svc.DeleteSecret(ctx, &in); secrets.Code(err) != "InvalidParameterException" {
			t.Errorf("DeleteSecret(%d days, force %v): %v; want InvalidParameterException", *in.RecoveryWindowInDays, in.ForceDeleteWithoutRecovery != nil, err)
		}
	}
	out, err := f.svc.DeleteSecret(ctx, &secrets.DeleteSecretInput{SecretId: ptr("s")})
	if err != nil || float64(*out.DeletionDate) != float64(f.now.Add(30*24*time.Hour).Unix()) {
		t.Fatalf("DeleteSecret = %+v, %v; want deletion in 30 days", out, err)
	}
	if _, err := f.svc.GetSecretValue(ctx, &secrets.GetSecretValueInput{SecretId: ptr("s")}); secrets.Code(err) != "InvalidRequestException" {
		t.Fatalf("GetSecretValue of a deleted secret: %v; want InvalidRequestException", err)
	}
	if l, err := f.svc.ListSecrets(ctx, &secrets.ListSecretsInput{}); err != nil || len(l.SecretList) != 0 {
		t.Fatalf("ListSecrets lists a deleted secret: %+v, %v", l, err)
	}
	if l, err := f.svc.ListSecrets(ctx, &secrets.ListSecretsInput{IncludePlannedDeletion: ptr(true)}); err != nil || len(l.SecretList) != 1 {
		t.Fatalf("ListSecrets IncludePlannedDeletion: %+v, %v", l, err)
	}
	if _, err := f.svc.RestoreSecret(ctx, &secrets.RestoreSecretInput{SecretId: ptr("s")}); err != nil {
		t.Fatal(err)
	}
	if got, err := f.svc.GetSecretValue(ctx, &secrets.GetSecretValueInput{SecretId: ptr("s")}); err != nil || *got.SecretString != "v" {
		t.Fatalf("GetSecretValue after RestoreSecret: %v", err)
	}
	if _, err := f.svc.DeleteSecret(ctx, &secrets.DeleteSecretInput{SecretId: ptr("s"), RecoveryWindowInDays: ptr(int64(7))}); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(7 * 24 * time.Hour)
	if _, err := f.svc.DescribeSecret(ctx, &secrets.DescribeSecretInput{SecretId: ptr("s")}); secrets.Code(err) != "ResourceNotFoundException" {
		t.Fatalf("DescribeSecret after the recovery window: %v; want ResourceNotFoundException", err)
	}
	if _, err := f.svc.RestoreSecret(ctx, &secrets.RestoreSecretInput{SecretId: ptr("s")}); secrets.Code(err) != "ResourceNotFoundException" {
		t.Fatalf("RestoreSecret after the recovery window: %v", err)
	}
	if _, err := f.st.Get(ctx, secrets.Prefix+"s"); !errdefs.IsNotFound(err) {
		t.Fatalf("the secret's record (and its sealed values) stays in the store after its recovery window: %v", err)
	}
	c, err := f.svc.CreateSecret(ctx, &secrets.CreateSecretInput{Name: ptr("s"), SecretString: ptr("w")})
	if err != nil {
		t.Fatalf("CreateSecret after the recovery window: %v", err)
	}
	if _, err := f.svc.DeleteSecret(ctx, &secrets.DeleteSecretInput{SecretId: &c.ARN, ForceDeleteWithoutRecovery: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.GetSecretValue(ctx, &secrets.GetSecretValueInput{SecretId: &c.ARN}); secrets.Code(err) != "ResourceNotFoundException" {
		t.Fatalf("GetSecretValue after a forced delete: %v", err)
	}
}

// TestResolve: ECS's valueFrom forms.
func TestResolve(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	tok := strings.Repeat("a", 32)
	c, err := f.svc.CreateSecret(ctx, &secrets.CreateSecretInput{Name: ptr("db"), SecretString: ptr(`{"user":"admin","password":"hunter2","port":5432}`), ClientRequestToken: &tok})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.PutSecretValue(ctx, &secrets.PutSecretValueInput{SecretId: ptr("db"), SecretString: ptr(`{"password":"newpass"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.PutParameter(ctx, &secrets.PutParameterInput{Name: ptr("/app/key"), Value: ptr("k3y"), Type: ptr("SecureString")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.PutParameter(ctx, &secrets.PutParameterInput{Name: ptr("plain"), Value: ptr("p"), Type: ptr("String")}); err != nil {
		t.Fatal(err)
	}
	partial := c.ARN[:len(c.ARN)-7]
	// A name that looks like a full ARN's (a hyphen and six characters).
	hyphen, err := f.svc.CreateSecret(ctx, &secrets.CreateSecretInput{Name: ptr("my-secret"), SecretString: ptr("hyphenated")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		valueFrom, want string
		notFound        bool
	}{
		{valueFrom: c.ARN, want: `{"password":"newpass"}`},
		{valueFrom: hyphen.ARN, want: "hyphenated"},
		{valueFrom: hyphen.ARN[:len(hyphen.ARN)-7], want: "hyphenated"},
		{valueFrom: partial, want: `{"password":"newpass"}`},
		{valueFrom: c.ARN + ":password::", want: "newpass"},
		{valueFrom: c.ARN + ":password:AWSPREVIOUS:", want: "hunter2"},
		{valueFrom: partial + ":port::" + tok, want: "5432"},
		{valueFrom: c.ARN + ":nokey::", notFound: true},
		{valueFrom: "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf", notFound: true},
		{valueFrom: "/app/key", want: "k3y"},
		{valueFrom: "arn:aws:ssm:us-east-1:123456789012:parameter/app/key", want: "k3y"},
		{valueFrom: "arn:aws:ssm:us-east-1:123456789012:parameter/plain", want: "p"},
		{valueFrom: "/app/missing", notFound: true},
	} {
		got, err := f.svc.Resolve(ctx, tc.valueFrom)
		switch {
		case tc.notFound:
			if !errdefs.IsNotFound(err) {
				t.Errorf("Resolve(%s) = %q, %v; want not found", tc.valueFrom, got, err)
			} else if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "newpass") {
				t.Errorf("Resolve(%s)'s error shows a value: %v", tc.valueFrom, err)
			}
		case err != nil || got != tc.want:
			t.Errorf("Resolve(%s) = %q, %v; want %q", tc.valueFrom, got, err, tc.want)
		}
	}
	var nf interface{ Unwrap() error }
	_, err = f.svc.Resolve(ctx, "/app/missing")
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "/app/missing") {
		t.Errorf("Resolve of a missing parameter: %v; want an error naming it", err)
	}
}

// TestParameters: versions, Overwrite, selectors, paths and deletion.
func TestParameters(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	put := func(name, value, typ string, overwrite bool) (int64, error) {
		in := &secrets.PutParameterInput{Name: &name, Value: &value, Overwrite: &overwrite}
		if typ != "" {
			in.Type = &typ
		}
		out, err := f.svc.PutParameter(ctx, in)
		if err != nil {
			return 0, err
		}
		return out.Version, nil
	}
	if v, err := put("/a/b", "1", "String", false); err != nil || v != 1 {
		t.Fatalf("PutParameter = %d, %v", v, err)
	}
	if _, err := put("/a/b", "2", "", false); secrets.Code(err) != "ParameterAlreadyExists" {
		t.Fatalf("PutParameter without Overwrite: %v", err)
	}
	if v, err := put("/a/b", "2", "", true); err != nil || v != 2 {
		t.Fatalf("PutParameter Overwrite = %d, %v", v, err)
	}
	for _, name := range []string{"a/b", "/aws/x", "ssm", "/a//b", "bad name", ""} {
		if _, err := put(name, "x", "String", false); secrets.Code(err) != "ValidationException" {
			t.Errorf("PutParameter %q: %v; want ValidationException", name, err)
		}
	}
	if _, err := put("/x", "x", "Number", false); secrets.Code(err) != "UnsupportedParameterType" {
		t.Errorf("PutParameter of type Number: %v", err)
	}
	put("/a/c/d", "3", "SecureString", false)
	put("/a/e", "4", "String", false)
	put("top", "5", "String", false)
	p, err := f.svc.GetParameter(ctx, &secrets.GetParameterInput{Name: ptr("/a/b:1")})
	if err != nil || p.Parameter.Value != "1" || *p.Parameter.Selector != ":1" {
		t.Fatalf("GetParameter /a/b:1 = %+v, %v", p, err)
	}
	if _, err := f.svc.GetParameter(ctx, &secrets.GetParameterInput{Name: ptr("/a/b:9")}); secrets.Code(err) != "ParameterVersionNotFound" {
		t.Fatalf("GetParameter /a/b:9: %v", err)
	}
	if _, err := f.svc.GetParameter(ctx, &secrets.GetParameterInput{Name: ptr("/nope")}); secrets.Code(err) != "ParameterNotFound" {
		t.Fatalf("GetParameter /nope: %v", err)
	}
	gs, err := f.svc.GetParameters(ctx, &secrets.GetParametersInput{Names: []string{"/a/b", "/nope", "top"}})
	if err != nil || len(gs.Parameters) != 2 || strings.Join(gs.InvalidParameters, ",") != "/nope" {
		t.Fatalf("GetParameters = %+v, %v", gs, err)
	}
	names := func(ps []secrets.Parameter) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name+"="+p.Value)
		}
		return strings.Join(out, " ")
	}
	one, err := f.svc.GetParametersByPath(ctx, &secrets.GetParametersByPathInput{Path: ptr("/a")})
	if err != nil || names(one.Parameters) != "/a/b=2 /a/e=4" {
		t.Fatalf("GetParametersByPath /a = %q, %v", names(one.Parameters), err)
	}
	all, err := f.svc.GetParametersByPath(ctx, &secrets.GetParametersByPathInput{Path: ptr("/a/"), Recursive: ptr(true), WithDecryption: ptr(true)})
	if err != nil || names(all.Parameters) != "/a/b=2 /a/c/d=3 /a/e=4" {
		t.Fatalf("GetParametersByPath /a/ recursive = %q, %v", names(all.Parameters), err)
	}
	page1, err := f.svc.GetParametersByPath(ctx, &secrets.GetParametersByPathInput{Path: ptr("/"), Recursive: ptr(true), MaxResults: ptr(int32(2))})
	if err != nil || len(page1.Parameters) != 2 || page1.NextToken == nil {
		t.Fatalf("GetParametersByPath page 1 = %+v, %v", page1, err)
	}
	page2, err := f.svc.GetParametersByPath(ctx, &secrets.GetParametersByPathInput{Path: ptr("/"), Recursive: ptr(true), MaxResults: ptr(int32(2)), NextToken: page1.NextToken})
	if err != nil || len(page2.Parameters) != 1 || page2.NextToken != nil || page2.Parameters[0].Name != "/a/e" {
		t.Fatalf("GetParametersByPath page 2 = %+v, %v", page2, err)
	}
	d, err := f.svc.DescribeParameters(ctx, &secrets.DescribeParametersInput{ParameterFilters: []secrets.ParameterFilter{{Key: ptr("Type"), Values: []string{"SecureString"}}}})
	if err != nil || len(d.Parameters) != 1 || d.Parameters[0].Name != "/a/c/d" || d.Parameters[0].KeyId != "alias/aws/ssm" {
		t.Fatalf("DescribeParameters Type=SecureString = %+v, %v", d, err)
	}
	del, err := f.svc.DeleteParameters(ctx, &secrets.DeleteParametersInput{Names: []string{"/a/b", "/nope"}})
	if err != nil || strings.Join(del.DeletedParameters, ",") != "/a/b" || strings.Join(del.InvalidParameters, ",") != "/nope" {
		t.Fatalf("DeleteParameters = %+v, %v", del, err)
	}
	if _, err := f.svc.DeleteParameter(ctx, &secrets.DeleteParameterInput{Name: ptr("/a/b")}); secrets.Code(err) != "ParameterNotFound" {
		t.Fatalf("DeleteParameter of a deleted parameter: %v", err)
	}
}
