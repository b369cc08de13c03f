package server_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/secrets"
	"vessel.dev/vessel/internal/server"
)

// withSecrets gives the server a secrets store under a key of its own.
func withSecrets(t *testing.T) func(*server.Config) {
	return func(cfg *server.Config) {
		sealer, _, err := auth.LoadMasterKey(filepath.Join(t.TempDir(), secrets.KeyFile), true)
		if err != nil {
			t.Fatal(err)
		}
		cfg.SecretsSealer = sealer
	}
}

// secretsClients are the SDK's Secrets Manager and SSM clients with key k.
func (e *env) secretsClients(k auth.Key) (*secretsmanager.Client, *ssm.Client) {
	cfg := aws.Config{Region: "us-east-1", RetryMaxAttempts: 1, HTTPClient: awsclient.HTTPClient(nil),
		Credentials: credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, "")}
	return secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(e.url) }),
		ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.BaseEndpoint = aws.String(e.url) })
}

// TestSecretsManagerWire drives every Secrets Manager operation through
// the SDK's client: its requests decode here, and our answers and typed
// exceptions decode there.
func TestSecretsManagerWire(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, withSecrets(t))
	sm, _ := e.secretsClients(e.key)
	c := ctx(t)
	created, err := sm.CreateSecret(c, &secretsmanager.CreateSecretInput{Name: aws.String("prod/db"), SecretString: aws.String(`{"password":"p1"}`),
		Description: aws.String("the database"), Tags: []smtypes.Tag{{Key: aws.String("team"), Value: aws.String("a")}}})
	if err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	arn := aws.ToString(created.ARN)
	if !strings.HasPrefix(arn, "arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/db-") || len(arn) != len("arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/db-")+6 || created.VersionId == nil {
		t.Fatalf("CreateSecret = %s, version %v", arn, created.VersionId)
	}
	_, err = sm.CreateSecret(c, &secretsmanager.CreateSecretInput{Name: aws.String("prod/db"), SecretString: aws.String("x")})
	var exists *smtypes.ResourceExistsException
	if !errors.As(err, &exists) {
		t.Fatalf("CreateSecret again: %v; want ResourceExistsException", err)
	}
	put, err := sm.PutSecretValue(c, &secretsmanager.PutSecretValueInput{SecretId: aws.String(arn), SecretString: aws.String(`{"password":"p2"}`)})
	if err != nil || len(put.VersionStages) != 1 || put.VersionStages[0] != "AWSCURRENT" {
		t.Fatalf("PutSecretValue = %+v, %v", put, err)
	}
	got, err := sm.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String("prod/db")})
	if err != nil || aws.ToString(got.SecretString) != `{"password":"p2"}` || aws.ToString(got.VersionId) != aws.ToString(put.VersionId) || got.CreatedDate == nil {
		t.Fatalf("GetSecretValue = %+v, %v", got, err)
	}
	prev, err := sm.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn), VersionStage: aws.String("AWSPREVIOUS")})
	if err != nil || aws.ToString(prev.SecretString) != `{"password":"p1"}` || aws.ToString(prev.VersionId) != aws.ToString(created.VersionId) {
		t.Fatalf("GetSecretValue AWSPREVIOUS = %+v, %v", prev, err)
	}
	if _, err := sm.UpdateSecret(c, &secretsmanager.UpdateSecretInput{SecretId: aws.String(arn), Description: aws.String("changed"), SecretBinary: []byte{0, 1, 2}}); err != nil {
		t.Fatalf("UpdateSecret: %v", err)
	}
	bin, err := sm.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil || string(bin.SecretBinary) != "\x00\x01\x02" || bin.SecretString != nil {
		t.Fatalf("GetSecretValue of a binary secret = %+v, %v", bin, err)
	}
	d, err := sm.DescribeSecret(c, &secretsmanager.DescribeSecretInput{SecretId: aws.String(arn)})
	if err != nil || aws.ToString(d.Description) != "changed" || len(d.VersionIdsToStages) != 2 || len(d.Tags) != 1 || d.CreatedDate == nil {
		t.Fatalf("DescribeSecret = %+v, %v", d, err)
	}
	sm.CreateSecret(c, &secretsmanager.CreateSecretInput{Name: aws.String("other")})
	l, err := sm.ListSecrets(c, &secretsmanager.ListSecretsInput{MaxResults: aws.Int32(1)})
	if err != nil || len(l.SecretList) != 1 || aws.ToString(l.SecretList[0].Name) != "other" || l.NextToken == nil {
		t.Fatalf("ListSecrets page 1 = %+v, %v", l, err)
	}
	l, err = sm.ListSecrets(c, &secretsmanager.ListSecretsInput{NextToken: l.NextToken})
	if err != nil || len(l.SecretList) != 1 || aws.ToString(l.SecretList[0].ARN) != arn || len(l.SecretList[0].SecretVersionsToStages) != 2 {
		t.Fatalf("ListSecrets page 2 = %+v, %v", l, err)
	}
	l, err = sm.ListSecrets(c, &secretsmanager.ListSecretsInput{Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"prod/"}}}})
	if err != nil || len(l.SecretList) != 1 {
		t.Fatalf("ListSecrets name filter = %+v, %v", l, err)
	}

	_, err = sm.DeleteSecret(c, &secretsmanager.DeleteSecretInput{SecretId: aws.String(arn), RecoveryWindowInDays: aws.Int64(3)})
	var invalidParam *smtypes.InvalidParameterException
	if !errors.As(err, &invalidParam) || !strings.Contains(err.Error(), "7 to 30") {
		t.Fatalf("DeleteSecret with 3 days: %v; want InvalidParameterException saying 7 to 30", err)
	}
	del, err := sm.DeleteSecret(c, &secretsmanager.DeleteSecretInput{SecretId: aws.String(arn), RecoveryWindowInDays: aws.Int64(7)})
	if err != nil || del.DeletionDate == nil {
		t.Fatalf("DeleteSecret = %+v, %v", del, err)
	}
	_, err = sm.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	var invalidReq *smtypes.InvalidRequestException
	if !errors.As(err, &invalidReq) {
		t.Fatalf("GetSecretValue of a deleted secret: %v; want InvalidRequestException", err)
	}
	if _, err := sm.RestoreSecret(c, &secretsmanager.RestoreSecretInput{SecretId: aws.String("prod/db")}); err != nil {
		t.Fatalf("RestoreSecret: %v", err)
	}
	if _, err := sm.DeleteSecret(c, &secretsmanager.DeleteSecretInput{SecretId: aws.String(arn), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatalf("DeleteSecret ForceDeleteWithoutRecovery: %v", err)
	}
	_, err = sm.DescribeSecret(c, &secretsmanager.DescribeSecretInput{SecretId: aws.String(arn)})
	var notFound *smtypes.ResourceNotFoundException
	if !errors.As(err, &notFound) {
		t.Fatalf("DescribeSecret of a deleted secret: %v; want ResourceNotFoundException", err)
	}
	code, msg, status := apiErr(t, err)
	if code != "ResourceNotFoundException" || status != http.StatusBadRequest || !strings.Contains(msg, arn) {
		t.Fatalf("DescribeSecret of a deleted secret: %s %d %q", code, status, msg)
	}
}

// TestSSMWire drives every Parameter Store operation through the SDK's
// client.
func TestSSMWire(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, withSecrets(t))
	_, ps := e.secretsClients(e.key)
	c := ctx(t)
	out, err := ps.PutParameter(c, &ssm.PutParameterInput{Name: aws.String("/app/db/password"), Value: aws.String("s3cret"), Type: ssmtypes.ParameterTypeSecureString})
	if err != nil || out.Version != 1 || out.Tier != ssmtypes.ParameterTierStandard {
		t.Fatalf("PutParameter = %+v, %v", out, err)
	}
	_, err = ps.PutParameter(c, &ssm.PutParameterInput{Name: aws.String("/app/db/password"), Value: aws.String("again"), Type: ssmtypes.ParameterTypeSecureString})
	var exists *ssmtypes.ParameterAlreadyExists
	if !errors.As(err, &exists) {
		t.Fatalf("PutParameter again: %v; want ParameterAlreadyExists", err)
	}
	if out, err := ps.PutParameter(c, &ssm.PutParameterInput{Name: aws.String("/app/db/password"), Value: aws.String("s3cret2"), Overwrite: aws.Bool(true)}); err != nil || out.Version != 2 {
		t.Fatalf("PutParameter Overwrite = %+v, %v", out, err)
	}
	ps.PutParameter(c, &ssm.PutParameterInput{Name: aws.String("/app/name"), Value: aws.String("web"), Type: ssmtypes.ParameterTypeString})
	ps.PutParameter(c, &ssm.PutParameterInput{Name: aws.String("/app/hosts"), Value: aws.String("a,b"), Type: ssmtypes.ParameterTypeStringList})

	p, err := ps.GetParameter(c, &ssm.GetParameterInput{Name: aws.String("/app/db/password"), WithDecryption: aws.Bool(true)})
	if err != nil || aws.ToString(p.Parameter.Value) != "s3cret2" || p.Parameter.Version != 2 || p.Parameter.Type != ssmtypes.ParameterTypeSecureString ||
		aws.ToString(p.Parameter.ARN) != "arn:aws:ssm:us-east-1:000000000000:parameter/app/db/password" || p.Parameter.LastModifiedDate == nil {
		t.Fatalf("GetParameter WithDecryption = %+v, %v", p.Parameter, err)
	}
	p, err = ps.GetParameter(c, &ssm.GetParameterInput{Name: aws.String("/app/db/password:1"), WithDecryption: aws.Bool(true)})
	if err != nil || aws.ToString(p.Parameter.Value) != "s3cret" {
		t.Fatalf("GetParameter :1 = %+v, %v", p, err)
	}
	p, err = ps.GetParameter(c, &ssm.GetParameterInput{Name: aws.String("/app/db/password")})
	if err != nil || strings.Contains(aws.ToString(p.Parameter.Value), "s3cret") {
		t.Fatalf("GetParameter without WithDecryption = %q, %v; want the sealed value", aws.ToString(p.Parameter.Value), err)
	}
	_, err = ps.GetParameter(c, &ssm.GetParameterInput{Name: aws.String("/app/missing")})
	var notFound *ssmtypes.ParameterNotFound
	if !errors.As(err, &notFound) {
		t.Fatalf("GetParameter of a missing parameter: %v; want ParameterNotFound", err)
	}
	gs, err := ps.GetParameters(c, &ssm.GetParametersInput{Names: []string{"/app/name", "/app/missing"}})
	if err != nil || len(gs.Parameters) != 1 || len(gs.InvalidParameters) != 1 {
		t.Fatalf("GetParameters = %+v, %v", gs, err)
	}
	byPath, err := ps.GetParametersByPath(c, &ssm.GetParametersByPathInput{Path: aws.String("/app"), Recursive: aws.Bool(true), WithDecryption: aws.Bool(true)})
	if err != nil || len(byPath.Parameters) != 3 || aws.ToString(byPath.Parameters[0].Value) != "s3cret2" {
		t.Fatalf("GetParametersByPath recursive = %+v, %v", byPath, err)
	}
	byPath, err = ps.GetParametersByPath(c, &ssm.GetParametersByPathInput{Path: aws.String("/app")})
	if err != nil || len(byPath.Parameters) != 2 {
		t.Fatalf("GetParametersByPath one level = %+v, %v", byPath, err)
	}
	_, err = ps.GetParametersByPath(c, &ssm.GetParametersByPathInput{Path: aws.String("app")})
	code, msg, _ := apiErr(t, err)
	if code != "ValidationException" || !strings.Contains(msg, "begins with /") {
		t.Fatalf("GetParametersByPath without /: %s %q", code, msg)
	}
	dp, err := ps.DescribeParameters(c, &ssm.DescribeParametersInput{ParameterFilters: []ssmtypes.ParameterStringFilter{
		{Key: aws.String("Name"), Option: aws.String("BeginsWith"), Values: []string{"/app/db"}}}})
	if err != nil || len(dp.Parameters) != 1 || dp.Parameters[0].Version != 2 || aws.ToString(dp.Parameters[0].KeyId) != "alias/aws/ssm" {
		t.Fatalf("DescribeParameters = %+v, %v", dp, err)
	}
	if _, err := ps.DeleteParameter(c, &ssm.DeleteParameterInput{Name: aws.String("/app/name")}); err != nil {
		t.Fatalf("DeleteParameter: %v", err)
	}
	if _, err := ps.DeleteParameter(c, &ssm.DeleteParameterInput{Name: aws.String("/app/name")}); !errors.As(err, &notFound) {
		t.Fatalf("DeleteParameter again: %v; want ParameterNotFound", err)
	}
	dd, err := ps.DeleteParameters(c, &ssm.DeleteParametersInput{Names: []string{"/app/hosts", "/app/name"}})
	if err != nil || len(dd.DeletedParameters) != 1 || len(dd.InvalidParameters) != 1 {
		t.Fatalf("DeleteParameters = %+v, %v", dd, err)
	}
}

// TestSecretsNeedTheirActions: the two APIs' operations are actions of
// their own that a key's policy must allow: a read-only key may describe
// and list but reads no value; a host's key calls neither API; a custom
// key gets exactly what it lists.
func TestSecretsNeedTheirActions(t *testing.T) {
	e := newKeyEnv(t, withSecrets(t))
	c := ctx(t)
	adminSM, adminSSM := e.secretsClients(e.key)
	if _, err := adminSM.CreateSecret(c, &secretsmanager.CreateSecretInput{Name: aws.String("db"), SecretString: aws.String("topsecret")}); err != nil {
		t.Fatal(err)
	}
	if _, err := adminSSM.PutParameter(c, &ssm.PutParameterInput{Name: aws.String("/db"), Value: aws.String("topsecret"), Type: ssmtypes.ParameterTypeSecureString}); err != nil {
		t.Fatal(err)
	}

	roSM, roSSM := e.secretsClients(e.create("auditor", auth.PolicyReadOnly))
	if _, err := roSM.ListSecrets(c, &secretsmanager.ListSecretsInput{}); err != nil {
		t.Errorf("read-only ListSecrets: %v", err)
	}
	if _, err := roSM.DescribeSecret(c, &secretsmanager.DescribeSecretInput{SecretId: aws.String("db")}); err != nil {
		t.Errorf("read-only DescribeSecret: %v", err)
	}
	if _, err := roSSM.DescribeParameters(c, &ssm.DescribeParametersInput{}); err != nil {
		t.Errorf("read-only DescribeParameters: %v", err)
	}
	_, err := roSM.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String("db")})
	wantDenied(t, err, "auditor", "secretsmanager:GetSecretValue", http.StatusBadRequest)
	_, err = roSSM.GetParameter(c, &ssm.GetParameterInput{Name: aws.String("/db"), WithDecryption: aws.Bool(true)})
	wantDenied(t, err, "auditor", "ssm:GetParameter", http.StatusBadRequest)
	_, err = roSM.PutSecretValue(c, &secretsmanager.PutSecretValueInput{SecretId: aws.String("db"), SecretString: aws.String("mine")})
	wantDenied(t, err, "auditor", "secretsmanager:PutSecretValue", http.StatusBadRequest)

	cuSM, cuSSM := e.secretsClients(e.create("reader", "", "ssm:GetParameter"))
	if p, err := cuSSM.GetParameter(c, &ssm.GetParameterInput{Name: aws.String("/db"), WithDecryption: aws.Bool(true)}); err != nil || aws.ToString(p.Parameter.Value) != "topsecret" {
		t.Errorf("custom ssm:GetParameter: %v", err)
	}
	_, err = cuSM.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String("db")})
	wantDenied(t, err, "reader", "secretsmanager:GetSecretValue", http.StatusBadRequest)
}

// TestTaskSecrets: a task definition's secrets (a Secrets Manager ARN with
// a JSON key, an SSM parameter's name) are given to the host the task runs
// on, and to no other host; their values appear in no API answer and in
// no stored record but the sealed ones; a missing secret stops the task
// with TaskFailedToStart and a reason that names it.
func TestTaskSecrets(t *testing.T) {
	keyH1, keyH2 := newHostKey(t, "h1"), newHostKey(t, "h2")
	e := newEnvWith(t, envOptions{}, func(c *server.Config) {
		withSecrets(t)(c)
		c.Keyring = auth.NewStaticKeyring(append(c.Keys, keyH1, keyH2)...)
	})
	sm, ps := e.secretsClients(e.key)
	c := ctx(t)
	const password, token = "pw-93f1c0aa", "tok-5be2d911"
	created, err := sm.CreateSecret(c, &secretsmanager.CreateSecretInput{Name: aws.String("db"), SecretString: aws.String(`{"password":"` + password + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ps.PutParameter(c, &ssm.PutParameterInput{Name: aws.String("/app/token"), Value: aws.String(token), Type: ssmtypes.ParameterTypeSecureString}); err != nil {
		t.Fatal(err)
	}
	register := func(family string, secrets ...ecstypes.Secret) string {
		out, err := e.ecs.RegisterTaskDefinition(c, &ecs.RegisterTaskDefinitionInput{
			Family: aws.String(family), Cpu: aws.String("256"), Memory: aws.String("512"),
			NetworkMode: ecstypes.NetworkModeAwsvpc, RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox"),
				Command: []string{"sleep", "300"}, Secrets: secrets}},
		})
		if err != nil {
			t.Fatalf("RegisterTaskDefinition: %v", err)
		}
		return *out.TaskDefinition.TaskDefinitionArn
	}
	def := register("with-secrets",
		ecstypes.Secret{Name: aws.String("DB_PASSWORD"), ValueFrom: aws.String(*created.ARN + ":password::")},
		ecstypes.Secret{Name: aws.String("TOKEN"), ValueFrom: aws.String("/app/token")})
	arn := e.run(def)
	e.waitStatus(arn, "RUNNING")
	id := arn[strings.LastIndex(arn, "/")+1:]

	got, err := e.vesselClient(keyH1).TaskSecrets(c, "h1", id)
	if err != nil || got.Failure != "" || got.Env["app"]["DB_PASSWORD"] != password || got.Env["app"]["TOKEN"] != token {
		t.Fatalf("TaskSecrets for the task's host: failure %q, %v; want both values", got.Failure, err)
	}
	if _, err := e.vesselClient(keyH2).TaskSecrets(c, "h1", id); !errdefs.IsPermissionDenied(err) {
		t.Errorf("host h2's key asking as h1: %v; want permission denied", err)
	}
	if got, err := e.vesselClient(keyH2).TaskSecrets(c, "h2", id); !errdefs.IsNotFound(err) || len(got.Env) > 0 {
		t.Errorf("host h2 asking for h1's task: %v; want not found", err)
	}

	// The values are in no answer and no record in clear.
	for _, op := range []struct{ name, body string }{
		{"DescribeTasks", `{"tasks":["` + arn + `"]}`},
		{"DescribeTaskDefinition", `{"taskDefinition":"` + def + `"}`},
	} {
		status, code, _ := e.rawECS(op.name, op.body)
		if status != http.StatusOK {
			t.Fatalf("%s: %d %s", op.name, status, code)
		}
	}
	td, err := e.ecs.DescribeTaskDefinition(c, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(def)})
	if err != nil || len(td.TaskDefinition.ContainerDefinitions[0].Secrets) != 2 {
		t.Fatalf("DescribeTaskDefinition shows secrets %v, %v; want both named", td.TaskDefinition.ContainerDefinitions[0].Secrets, err)
	}
	kvs, _, err := e.st.List(c, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if strings.Contains(string(kv.Value), password) || strings.Contains(string(kv.Value), token) {
			t.Errorf("record %s holds a secret's value in clear", kv.Key)
		}
	}

	// A missing secret: the task fails to start, naming it.
	missing := "arn:aws:secretsmanager:us-east-1:000000000000:secret:missing-AbCdEf"
	arn = e.run(register("missing-secret", ecstypes.Secret{Name: aws.String("X"), ValueFrom: aws.String(missing)}))
	stopped := e.waitStatus(arn, "STOPPED")
	reason := aws.ToString(stopped.StoppedReason)
	if stopped.StopCode != ecstypes.TaskStopCodeTaskFailedToStart ||
		!strings.HasPrefix(reason, "ResourceInitializationError: unable to pull secrets or registry auth: ") || !strings.Contains(reason, missing) {
		t.Fatalf("a task with a missing secret stopped with %s %q; want TaskFailedToStart, ResourceInitializationError naming %s", stopped.StopCode, reason, missing)
	}
	t.Logf("stoppedReason: %s", reason)
}

// TestSecretsBadInput: malformed requests to either API are answered in
// JSON 1.1's shape, with the API's exception names and messages that say
// what is accepted; a control plane without a secrets store refuses both.
func TestSecretsBadInput(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, withSecrets(t))
	raw := func(e *env, target, body string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, e.url+"/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", target)
		if err := auth.SignRequest(t.Context(), req, e.key, "us-east-1", "secretsmanager", []byte(body), time.Now()); err != nil {
			t.Fatal(err)
		}
		return doRaw(t, req)
	}
	for _, tc := range []struct {
		target, body, code string
		says               []string
	}{
		{"secretsmanager.RotateSecret", `{}`, "UnknownOperationException", []string{"RotateSecret is not supported", "CreateSecret, DeleteSecret"}},
		{"AmazonSSM.LabelParameterVersion", `{}`, "UnknownOperationException", []string{"GetParametersByPath"}},
		{"AmazonSSM.PutParameter", `{`, "SerializationException", []string{"not valid JSON"}},
		{"secretsmanager.CreateSecret", `{"Name":"bad name!"}`, "InvalidParameterException", []string{"letters, digits and /_+=.@-"}},
		{"secretsmanager.GetSecretValue", `{"SecretId":"arn:aws:ecs:us-east-1:000000000000:cluster/x"}`, "InvalidParameterException", []string{"arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME"}},
		{"secretsmanager.ListSecrets", `{"MaxResults":500}`, "InvalidParameterException", []string{"1 to 100"}},
		{"AmazonSSM.PutParameter", `{"Name":"/x","Value":"v","Type":"Number"}`, "UnsupportedParameterType", []string{"String, StringList, SecureString"}},
		{"AmazonSSM.PutParameter", `{"Name":"x/y","Value":"v","Type":"String"}`, "ValidationException", []string{"fully qualified"}},
		{"AmazonSSM.GetParameters", `{"Names":[]}`, "ValidationException", []string{"1 to 10"}},
	} {
		status, code, msg := raw(e, tc.target, tc.body)
		if status != http.StatusBadRequest || code != tc.code {
			t.Errorf("%s %s: HTTP %d %s %q; want 400 %s", tc.target, tc.body, status, code, msg, tc.code)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(msg, s) {
				t.Errorf("%s %s: message %q does not say %q", tc.target, tc.body, msg, s)
			}
		}
	}
	without := newEnv(t, envOptions{noAgent: true})
	if status, code, msg := raw(without, "secretsmanager.ListSecrets", `{}`); status != http.StatusBadRequest || code != "UnknownOperationException" || !strings.Contains(msg, "no secrets store") {
		t.Errorf("ListSecrets without a secrets store: HTTP %d %s %q", status, code, msg)
	}
}
