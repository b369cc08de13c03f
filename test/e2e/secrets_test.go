package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"golang.org/x/sys/unix"
)

// TestSecretsEndToEnd: with the real aws CLI, a Secrets Manager secret (a
// JSON document) and an SSM SecureString are created; a runc task whose
// definition takes both in `secrets` (a JSON key of the secret, the
// parameter by name) prints them; a task naming a missing secret stops
// with TaskFailedToStart and a reason naming it. The two values are found
// nowhere else: not in any API answer but GetSecretValue's and
// GetParameter's, not in /metrics, not in the server's (and its agent's)
// debug log, not in any file of the data directory.
func TestSecretsEndToEnd(t *testing.T) {
	s := startRuncServer(t, "--log-level", "debug")
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	password, token := "pw-"+randomHex(t), "tok-"+randomHex(t)
	var answers bytes.Buffer // every API answer that must not show a value
	awsJSON := func(out any, args ...string) {
		t.Helper()
		stdout, stderr, err := s.awsRaw("", args...)
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		if args[1] != "get-secret-value" && args[1] != "get-parameter" {
			answers.Write(stdout)
		}
		if out != nil {
			if err := json.Unmarshal(stdout, out); err != nil {
				t.Fatalf("aws %s: decoding %q: %v", strings.Join(args, " "), stdout, err)
			}
		}
	}

	var created struct{ ARN, Name, VersionId string }
	awsJSON(&created, "secretsmanager", "create-secret", "--name", "e2e/db", "--secret-string", `{"user":"app","password":"`+password+`"}`)
	if !strings.HasPrefix(created.ARN, "arn:aws:secretsmanager:us-east-1:") || !strings.Contains(created.ARN, ":secret:e2e/db-") || created.VersionId == "" {
		t.Fatalf("create-secret answered %+v", created)
	}
	var value struct{ SecretString string }
	awsJSON(&value, "secretsmanager", "get-secret-value", "--secret-id", created.ARN)
	if !strings.Contains(value.SecretString, password) {
		t.Fatalf("get-secret-value answered %q", value.SecretString)
	}
	awsJSON(nil, "secretsmanager", "describe-secret", "--secret-id", "e2e/db")
	awsJSON(nil, "secretsmanager", "list-secrets")
	var put struct{ Version int }
	awsJSON(&put, "ssm", "put-parameter", "--name", "/e2e/token", "--type", "SecureString", "--value", token)
	if put.Version != 1 {
		t.Fatalf("put-parameter answered version %d", put.Version)
	}
	var param struct{ Parameter struct{ Value string } }
	awsJSON(&param, "ssm", "get-parameter", "--name", "/e2e/token", "--with-decryption")
	if param.Parameter.Value != token {
		t.Fatalf("get-parameter --with-decryption answered %q", param.Parameter.Value)
	}
	awsJSON(&param, "ssm", "get-parameters-by-path", "--path", "/e2e") // without decryption: sealed
	awsJSON(nil, "ssm", "describe-parameters")
	_, stderr, err := s.awsRaw("", "ssm", "get-parameter", "--name", "/e2e/missing")
	if err == nil || !strings.Contains(stderr, "ParameterNotFound") {
		t.Fatalf("get-parameter of a missing parameter: %v %s", err, stderr)
	}
	_, stderr, err = s.awsRaw("", "secretsmanager", "delete-secret", "--secret-id", "e2e/db", "--recovery-window-in-days", "3")
	if err == nil || !strings.Contains(stderr, "InvalidParameterException") {
		t.Fatalf("delete-secret with a 3-day window: %v %s", err, stderr)
	}

	register := func(family string, secrets ...map[string]string) {
		t.Helper()
		def := map[string]any{"family": family, "networkMode": "awsvpc", "requiresCompatibilities": []string{"FARGATE"},
			"cpu": "256", "memory": "512", "containerDefinitions": []map[string]any{{"name": "app", "image": img, "essential": true,
				"command": []string{"sh", "-c", `echo "db=$DB_PASSWORD token=$TOKEN"`}, "secrets": secrets, "stopTimeout": 2}}}
		file := filepath.Join(t.TempDir(), family+".json")
		b, _ := json.Marshal(def)
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		awsJSON(nil, "ecs", "register-task-definition", "--cli-input-json", "file://"+file)
	}
	run := func(family string) string {
		t.Helper()
		var out struct{ Tasks []ecsTask }
		awsJSON(&out, "ecs", "run-task", "--task-definition", family, "--launch-type", "FARGATE",
			"--network-configuration", "awsvpcConfiguration={subnets=[subnet-default]}")
		if len(out.Tasks) != 1 {
			t.Fatalf("run-task %s answered %+v", family, out)
		}
		return out.Tasks[0].TaskArn
	}
	register("print-secrets",
		map[string]string{"name": "DB_PASSWORD", "valueFrom": created.ARN + ":password::"},
		map[string]string{"name": "TOKEN", "valueFrom": "/e2e/token"})
	arn := run("print-secrets")
	st := s.waitStatus(arn, "STOPPED", 90*time.Second)
	if len(st.Containers) != 1 || st.Containers[0].ExitCode == nil || *st.Containers[0].ExitCode != 0 {
		t.Fatalf("the task printing its secrets: %+v", st)
	}
	logs, errOut, code := s.vessel("logs", arn)
	if code != 0 || !strings.Contains(logs, "db="+password+" token="+token) {
		t.Fatalf("vessel logs (exit %d): %q %s; want the two values printed", code, logs, errOut)
	}

	missing := "arn:aws:secretsmanager:us-east-1:000000000000:secret:e2e/missing-AbCdEf"
	register("missing-secret", map[string]string{"name": "DB_PASSWORD", "valueFrom": missing})
	st = s.waitStatus(run("missing-secret"), "STOPPED", 90*time.Second)
	if st.StopCode != "TaskFailedToStart" || !strings.HasPrefix(st.StoppedReason, "ResourceInitializationError: unable to pull secrets or registry auth: ") ||
		!strings.Contains(st.StoppedReason, missing) {
		t.Fatalf("the task with a missing secret stopped with %s %q; want TaskFailedToStart, a ResourceInitializationError naming %s", st.StopCode, st.StoppedReason, missing)
	}
	t.Logf("stoppedReason: %s", st.StoppedReason)

	// Nowhere else.
	awsJSON(nil, "ecs", "describe-tasks", "--tasks", arn)
	awsJSON(nil, "ecs", "describe-task-definition", "--task-definition", "print-secrets")
	awsJSON(nil, "ecs", "list-tasks", "--desired-status", "STOPPED")
	resp, err := http.Get(s.endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(&answers, resp.Body)
	resp.Body.Close()
	if !strings.Contains(answers.String(), "print-secrets") || !strings.Contains(answers.String(), "vessel_") {
		t.Fatalf("the answers gathered lack the task definition or the metrics: is this the right text?")
	}
	s.kill(syscall.SIGTERM) // its log is complete, its files closed
	for _, v := range []string{password, token} {
		if strings.Contains(answers.String(), v) {
			t.Errorf("an API answer or /metrics shows value %s", v)
		}
		if strings.Contains(s.log.String(), v) {
			t.Errorf("the server's output shows value %s", v)
		}
	}
	// The task's own log holds what it printed (vessel logs reads it
	// there): every other file must not.
	printed := filepath.Join(s.dataDir, "logs", arn[strings.LastIndex(arn, "/")+1:])
	noValuesIn(t, s.dataDir, printed, password, token)
}

// noValuesIn fails t if a regular file under dir, but those under skip,
// holds one of values.
func noValuesIn(t *testing.T, dir, skip string, values ...string) {
	t.Helper()
	files := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || skip != "" && strings.HasPrefix(path, skip+"/") {
			return nil
		}
		files++
		for _, v := range values {
			if found, err := fileContains(path, []byte(v)); err != nil || found {
				t.Errorf("file %s of the data directory holds value %s (%v)", path, v, err)
			}
		}
		return nil
	})
	if files < 3 {
		t.Fatalf("read %d files of the data directory %s: is this the right directory?", files, dir)
	}
}

// fileContains reports whether the file at path holds v. It reads only
// the file's data, skipping its holes: a task's disk images are large
// sparse files.
func fileContains(path string, v []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fd := int(f.Fd())
	buf := make([]byte, 1<<20+len(v))
	for pos := int64(0); ; {
		start, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return false, nil // no data after pos
		}
		if err != nil {
			return false, err
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return false, err
		}
		// Search [start, end) in pieces that overlap by len(v)-1.
		keep := 0
		for off := start; off < end; {
			n, err := f.ReadAt(buf[keep:keep+int(min(int64(len(buf)-keep), end-off))], off)
			if bytes.Contains(buf[:keep+n], v) {
				return true, nil
			}
			if err != nil && err != io.EOF {
				return false, err
			}
			if n == 0 {
				break
			}
			off += int64(n)
			keep = copy(buf, buf[max(0, keep+n-len(v)+1):keep+n])
		}
		pos = end
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestRepositoryCredentialsFromSecretsManager: a task definition's
// repositoryCredentials name a Secrets Manager secret (made with the aws
// CLI) holding a private registry's username and password: the task's
// host reads it when the task starts and pulls the private image with it;
// the password is in no file of the data directory (the task's record
// holds only the secret's ARN). A secret that is not registry
// credentials stops the task with TaskFailedToStart, naming it.
func TestRepositoryCredentialsFromSecretsManager(t *testing.T) {
	private, _ := privateRegistry(t) // alice's password: s3cret
	s := startRuncServer(t)
	var good, bad struct{ ARN string }
	s.aws(&good, "secretsmanager", "create-secret", "--name", "team-registry", "--secret-string", `{"username":"alice","password":"s3cret"}`)
	s.aws(&bad, "secretsmanager", "create-secret", "--name", "not-credentials", "--secret-string", "just-a-string")
	register := func(family, secretARN string) {
		t.Helper()
		def := map[string]any{"family": family, "networkMode": "awsvpc", "cpu": "256", "memory": "512",
			"containerDefinitions": []map[string]any{{"name": "app", "image": private, "command": []string{"sh", "-c", "echo ran"},
				"stopTimeout": 2, "repositoryCredentials": map[string]string{"credentialsParameter": secretARN}}}}
		file := filepath.Join(t.TempDir(), family+".json")
		b, _ := json.Marshal(def)
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s.aws(nil, "ecs", "register-task-definition", "--cli-input-json", "file://"+file)
	}
	run := func(family string) ecsTask {
		t.Helper()
		var out struct{ Tasks []ecsTask }
		s.aws(&out, "ecs", "run-task", "--task-definition", family)
		if len(out.Tasks) != 1 {
			t.Fatalf("run-task %s answered %+v", family, out)
		}
		return s.waitStatus(out.Tasks[0].TaskArn, "STOPPED", 90*time.Second)
	}
	register("private", good.ARN)
	register("bad-credentials", bad.ARN)
	if st := run("private"); len(st.Containers) != 1 || st.Containers[0].ExitCode == nil || *st.Containers[0].ExitCode != 0 {
		t.Fatalf("the private image's task: %+v; want exit 0", st)
	}
	st := run("bad-credentials")
	if st.StopCode != "TaskFailedToStart" || !strings.HasPrefix(st.StoppedReason, "ResourceInitializationError: unable to pull secrets or registry auth: ") ||
		!strings.Contains(st.StoppedReason, bad.ARN) || strings.Contains(st.StoppedReason, "just-a-string") {
		t.Fatalf("the task with a secret that is not registry credentials stopped with %s %q", st.StopCode, st.StoppedReason)
	}
	t.Logf("stoppedReason: %s", st.StoppedReason)
	s.kill(syscall.SIGTERM)
	noValuesIn(t, s.dataDir, "", "s3cret")
}

// TestSecretsOnRemoteAgent: a host agent in a process of its own, joined
// with a token, gets a task's secrets over the agent protocol signed with
// its host credential: a task whose secret exists runs there, one whose
// secret is missing stops with TaskFailedToStart naming it, and the
// agent's debug log shows no value.
func TestSecretsOnRemoteAgent(t *testing.T) {
	s := startServer(t, "--no-agent")
	value := "remote-" + randomHex(t)
	var created struct{ ARN string }
	s.aws(&created, "secretsmanager", "create-secret", "--name", "remote", "--secret-string", value)
	c := s.ecsClient()
	register := func(family, valueFrom string) {
		t.Helper()
		if _, err := c.RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox"),
				Command: []string{"sleep", "1000"}, Secrets: []ecstypes.Secret{{Name: aws.String("V"), ValueFrom: aws.String(valueFrom)}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	register("has-secret", created.ARN)
	register("lacks-secret", "/remote/missing")

	var log syncBuffer
	agent := exec.Command(vesselBin, "agent", "--server", s.endpoint, "--data-dir", t.TempDir(), "--host-id", "remote-host",
		"--runtime", "sim", "--runtimes", "sim", "--log-level", "debug", "--token", s.joinToken())
	agent.Env = agentEnv()
	agent.Stdout, agent.Stderr = &log, &log
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	})

	waitFor(t, c, runOne(t, c, "has-secret"), "RUNNING", 30*time.Second)
	st := waitFor(t, c, runOne(t, c, "lacks-secret"), "STOPPED", 30*time.Second)
	reason := aws.ToString(st.StoppedReason)
	if st.StopCode != ecstypes.TaskStopCodeTaskFailedToStart || !strings.HasPrefix(reason, "ResourceInitializationError: unable to pull secrets or registry auth: ") ||
		!strings.Contains(reason, "/remote/missing") {
		t.Fatalf("the task with a missing parameter stopped with %s %q", st.StopCode, reason)
	}
	t.Logf("stoppedReason: %s", reason)
	if !strings.Contains(log.String(), "remote-host") {
		t.Fatalf("the agent's log does not name its host: is it the right log?\n%s", log.String())
	}
	if strings.Contains(log.String(), value) {
		t.Errorf("the agent's log shows the secret's value")
	}
}
