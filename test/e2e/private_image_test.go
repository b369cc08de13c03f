package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestCachedPrivateImageNeedsCredentials: task 1 pulls a private image with
// repositoryCredentials and runs it; task 2 names the same image without
// credentials and must not get it from the host's cache: it stops with
// CannotPullContainerError, as its own pull would. A public image of the
// same registry stays usable by every task.
func TestCachedPrivateImageNeedsCredentials(t *testing.T) {
	requireRoot(t)
	private, public := privateRegistry(t)

	creds := filepath.Join(t.TempDir(), "registry-credentials.json")
	b, _ := json.Marshal(map[string]map[string]string{"team-registry": {"username": "alice", "password": "s3cret"}})
	if err := os.WriteFile(creds, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startRuncServer(t, "--registry-credentials", creds)
	c := s.ecsClient()
	register := func(family, image string, withCreds bool) {
		t.Helper()
		cd := ecstypes.ContainerDefinition{Name: aws.String("app"), Image: aws.String(image),
			Command: []string{"sh", "-c", "echo ran"}, StopTimeout: aws.Int32(2)}
		if withCreds {
			cd.RepositoryCredentials = &ecstypes.RepositoryCredentials{CredentialsParameter: aws.String("team-registry")}
		}
		if _, err := c.RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
			ContainerDefinitions: []ecstypes.ContainerDefinition{cd}}); err != nil {
			t.Fatalf("registering %s: %v", family, err)
		}
	}
	exitedZero := func(family string) {
		t.Helper()
		st := waitFor(t, c, runOne(t, c, family), "STOPPED", 90*time.Second)
		if len(st.Containers) != 1 || st.Containers[0].ExitCode == nil || *st.Containers[0].ExitCode != 0 {
			t.Fatalf("task %s: stoppedReason %q, containers %+v; want exit 0", family, aws.ToString(st.StoppedReason), st.Containers)
		}
	}
	register("with-creds", private, true)
	register("without-creds", private, false)
	register("public", public, false)

	exitedZero("with-creds") // the private image is now in the host's cache
	st := waitFor(t, c, runOne(t, c, "without-creds"), "STOPPED", 90*time.Second)
	reason := aws.ToString(st.StoppedReason)
	if !strings.HasPrefix(reason, "CannotPullContainerError") || !strings.Contains(reason, "401") {
		t.Fatalf("task without credentials: stoppedReason %q, containers %+v; want CannotPullContainerError with the registry's 401", reason, st.Containers)
	}
	t.Logf("without credentials: %s", reason)
	exitedZero("with-creds") // still served to a task with the credentials
	exitedZero("public")
}

// privateRegistry starts an in-process registry that asks for alice's
// password (s3cret) for repositories under private/ and serves the rest
// anonymously, and pushes a busybox image to private/app:v1 and
// public/app:v1.
func privateRegistry(t *testing.T) (private, public string) {
	t.Helper()
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/private/") {
			if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := mutate.AppendLayers(empty.Image, busyboxLayer(t))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	private, public = host+"/private/app:v1", host+"/public/app:v1"
	for _, ref := range []string{private, public} {
		r, _ := name.ParseReference(ref)
		if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
			t.Fatal(err)
		}
	}
	return private, public
}

// TestKubernetesImagePullSecrets: a pod whose imagePullSecrets hold the
// registry's credentials runs a private image; a pod of the same image
// without them does not, though the image is in the host's cache.
func TestKubernetesImagePullSecrets(t *testing.T) {
	private, _ := privateRegistry(t)
	e := startBridge(t, "--runtimes", "runc")
	e.profile("create", "priv", "--namespace", "default", "--labels", "app=priv", "--wait")
	host, _, _ := strings.Cut(private, "/")
	e.kubectl("create", "secret", "docker-registry", "regcred", "--docker-server="+host,
		"--docker-username=alice", "--docker-password=s3cret")

	withSecret := fmt.Sprintf(simplePod, "with-secret", "default", "priv", private, "250m") +
		"  imagePullSecrets: [{name: regcred}]\n"
	if out, err := e.apply(withSecret); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e.waitRunning("default", "with-secret")

	if out, err := e.apply(fmt.Sprintf(simplePod, "without-secret", "default", "priv", private, "250m")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e.eventually(120*time.Second, "the pod without the secret to be refused the image", func() (bool, string) {
		p := e.pod("default", "without-secret")
		if p.Status.Phase == "Running" {
			t.Fatalf("the pod without imagePullSecrets runs the private image")
		}
		ev := e.podEvents("default", "without-secret")
		raw := e.kubectl("get", "pod", "-n", "default", "without-secret", "-o", "json")
		return strings.Contains(ev+raw, "401 Unauthorized"), fmt.Sprintf("phase %s; events:\n%s", p.Status.Phase, ev)
	})
}
