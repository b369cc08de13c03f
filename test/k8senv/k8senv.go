package k8senv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/testenv"
)

// SkipEnv names the variable that, set to 1, makes Start skip the test.
const SkipEnv = "VESSEL_SKIP_K8S"

// How long a component may take to become ready on a busy 2-core machine.
const (
	etcdReadyTimeout      = time.Minute
	apiserverReadyTimeout = 3 * time.Minute
	managerReadyTimeout   = 2 * time.Minute
)

// Cluster is a running etcd and kube-apiserver. Its files, and those of its
// processes, live in Dir until the test ends.
type Cluster struct {
	Kubeconfig string // path of a kubeconfig for an admin (group system:masters)
	URL        string // kube-apiserver's address, https://127.0.0.1:PORT
	Dir        string // certificates, data, kubeconfig and process logs

	assets    string // directory of the binaries
	pki       *pki
	client    *http.Client // trusts the cluster's CA, presents the admin certificate
	mu        sync.Mutex
	procs     []*process
	manager   bool
	scheduler bool
}

// Start starts etcd and kube-apiserver for the test and returns once
// kube-apiserver answers /readyz. It stops them and removes Dir in
// t.Cleanup, and prints the ends of their logs if the test failed. It skips
// the test when VESSEL_SKIP_K8S=1, and fails it (t.Fatal) when a binary can't
// be found or built or a component does not become ready.
func Start(t testing.TB) *Cluster {
	t.Helper()
	testenv.SkipShort(t, "a real kube-apiserver and etcd")
	if os.Getenv(SkipEnv) == "1" {
		t.Skip(SkipEnv + "=1: skipping a test that needs a real kube-apiserver and etcd")
	}
	assets, err := Assets(t)
	if err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	dir := t.TempDir() // removed after the processes are stopped (cleanups run last-in, first-out)
	c := &Cluster{Dir: dir, assets: assets}
	t.Cleanup(func() {
		if t.Failed() {
			c.printLogs(t)
		}
	})
	t.Cleanup(c.stop)

	if c.pki, err = newPKI(dir); err != nil {
		t.Fatalf("k8senv: making certificates: %v", err)
	}
	if c.client, err = c.httpClient(); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	etcdURL, err := c.startEtcd()
	if err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	if err := c.startAPIServer(etcdURL); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := c.writeKubeconfig(c.Kubeconfig); err != nil {
		t.Fatalf("k8senv: writing kubeconfig: %v", err)
	}
	return c
}

// StartControllerManager starts kube-controller-manager with all its
// controllers against the cluster and returns once it reports healthy. It is
// stopped with the cluster. It fails the test if the manager does not start;
// calling it twice is a mistake and fails the test too.
func (c *Cluster) StartControllerManager(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	started := c.manager
	c.manager = true
	c.mu.Unlock()
	if started {
		t.Fatal("k8senv: StartControllerManager called twice on one cluster")
	}
	certDir := filepath.Join(c.Dir, "kube-controller-manager")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	err := retryPortClash(func() (*process, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := c.start("kube-controller-manager",
			"--kubeconfig="+c.Kubeconfig,
			"--authentication-kubeconfig="+c.Kubeconfig,
			"--authorization-kubeconfig="+c.Kubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port="+strconv.Itoa(port),
			"--cert-dir="+certDir,
			"--controllers=*",
			"--leader-elect=false",
			"--service-account-private-key-file="+c.pki.saKey,
			"--root-ca-file="+c.pki.caCert,
			"--cluster-signing-cert-file="+c.pki.caCert,
			"--cluster-signing-key-file="+c.pki.caKey,
			"--service-cluster-ip-range=10.96.0.0/16",
		)
		if err != nil {
			return nil, err
		}
		// Its serving certificate is self-signed; /healthz is open to all.
		insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		return p, p.waitHTTP(insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), managerReadyTimeout)
	})
	if err != nil {
		t.Fatalf("k8senv: %v", err)
	}
}

// Kubectl runs the kubectl next to the cluster's binaries with the cluster's
// kubeconfig and returns its standard output. The error, if any, carries its
// standard error. It blocks until kubectl exits.
func (c *Cluster) Kubectl(args ...string) (string, error) {
	return c.KubectlInput(nil, args...)
}

// KubectlInput is Kubectl with stdin as kubectl's standard input (as for
// "apply -f -").
func (c *Cluster) KubectlInput(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin("kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Bin returns the path of one of the cluster's binaries: "kubectl",
// "kube-apiserver", "kube-controller-manager", "etcd", and for StartNode
// "kube-scheduler", "kubelet" and "kube-proxy".
func (c *Cluster) Bin(name string) string { return filepath.Join(c.assets, name) }

var assets struct {
	sync.Mutex
	dir string
}

// Assets returns the directory holding etcd, kube-apiserver,
// kube-controller-manager and kubectl: $KUBEBUILDER_ASSETS when set, else the
// output of scripts/build-k8s, which it runs (once per test binary) and
// which builds them the first time. It blocks while they are built, up to
// the test's deadline.
func Assets(t testing.TB) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, checkAssets(dir)
	}
	assets.Lock()
	defer assets.Unlock()
	if assets.dir != "" {
		return assets.dir, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	ctx := context.Background()
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			var cancel context.CancelFunc
			// Leave time to report the failure before go test panics.
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-15*time.Second))
			defer cancel()
		}
	}
	script := filepath.Join(root, "scripts", "build-k8s")
	cmd := exec.CommandContext(ctx, script)
	cmd.Dir = root
	cmd.SysProcAttr = procAttr()
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("%s did not finish before the test's deadline (%s): run it before go test, or raise -timeout (a first build takes 6 to 12 minutes)", script, time.Since(start).Round(time.Second))
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", script, err, tail(stderr.String(), 40))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("k8senv: built the Kubernetes binaries in %s", d.Round(time.Second))
	}
	dir := strings.TrimSpace(stdout.String())
	if err := checkAssets(dir); err != nil {
		return "", fmt.Errorf("%s printed %q: %w", script, dir, err)
	}
	assets.dir = dir
	return dir, nil
}

func checkAssets(dir string) error {
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("kubernetes binaries in %s: %w (want etcd, kube-apiserver, kube-controller-manager and kubectl; unset KUBEBUILDER_ASSETS to build them with scripts/build-k8s)", dir, err)
		}
		if fi.Mode()&0o111 == 0 {
			return fmt.Errorf("kubernetes binaries in %s: %s is not executable", dir, name)
		}
	}
	return nil
}

// repoRoot finds Vessel's repository: from this source file's path, else (in
// a -trimpath build) by walking up from the working directory to go.mod.
func repoRoot() (string, error) {
	isRoot := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, "scripts", "build-k8s"))
		return err == nil
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if dir := filepath.Join(filepath.Dir(file), "..", ".."); isRoot(dir) {
			return filepath.Clean(dir), nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isRoot(dir) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no scripts/build-k8s above %s: set KUBEBUILDER_ASSETS to a directory of Kubernetes binaries", wd)
		}
	}
}

func (c *Cluster) startEtcd() (string, error) {
	var url string
	err := retryPortClash(func() (*process, error) {
		client, err := freePort()
		if err != nil {
			return nil, err
		}
		peer, err := freePort()
		if err != nil {
			return nil, err
		}
		url = fmt.Sprintf("http://127.0.0.1:%d", client)
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
		dataDir := filepath.Join(c.Dir, "etcd")
		if err := os.RemoveAll(dataDir); err != nil { // from a try that clashed
			return nil, err
		}
		p, err := c.start("etcd",
			"--name=k8senv",
			"--data-dir="+dataDir,
			"--listen-client-urls="+url,
			"--advertise-client-urls="+url,
			"--listen-peer-urls="+peerURL,
			"--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=k8senv="+peerURL,
			"--unsafe-no-fsync", // a test's data need not survive a power cut
			"--log-level=warn",
		)
		if err != nil {
			return nil, err
		}
		return p, p.waitHTTP(&http.Client{Timeout: 5 * time.Second}, url+"/health", etcdReadyTimeout)
	})
	return url, err
}

// noRouteArgs let kube-apiserver start on a machine (or in a network
// namespace) with no default route, where it finds no address to advertise.
// It refuses to advertise a loopback address while it keeps the endpoints of
// the "kubernetes" Service, so that Service gets none.
var noRouteArgs = []string{"--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none", "--bind-address=127.0.0.1"}

// startAPIServer starts kube-apiserver against etcd and waits for /readyz.
// It lets kube-apiserver pick the address it advertises (that of the default
// route) and listens on all addresses, so that the endpoint of the
// "kubernetes" Service (that address) answers pods that reach the Service
// through a node's kube-proxy; it falls back to noRouteArgs (loopback
// only) where there is no default route. Clients of the test use
// 127.0.0.1.
func (c *Cluster) startAPIServer(etcdURL string) error {
	err := c.tryAPIServer(etcdURL, nil)
	var exited *errExited
	if errors.As(err, &exited) && strings.Contains(tailFile(exited.log, 30), "no default routes found") {
		err = c.tryAPIServer(etcdURL, noRouteArgs)
	}
	return err
}

func (c *Cluster) tryAPIServer(etcdURL string, extra []string) error {
	return retryPortClash(func() (*process, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
		p, err := c.start("kube-apiserver", append([]string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=0.0.0.0", // noRouteArgs narrow it to loopback
			"--secure-port=" + strconv.Itoa(port),
			"--tls-cert-file=" + c.pki.servingCert,
			"--tls-private-key-file=" + c.pki.servingKey,
			"--client-ca-file=" + c.pki.caCert,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + c.pki.saPub,
			"--service-account-signing-key-file=" + c.pki.saKey,
			// As kubeadm and EKS: nodes' kubelets are authorized by the
			// Node authorizer and limited by NodeRestriction.
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--service-cluster-ip-range=10.96.0.0/16",
			"--allow-privileged=true",
			// The aggregation layer's front proxy, as kubeadm sets it up;
			// without it the controller manager logs errors in a loop.
			"--requestheader-client-ca-file=" + c.pki.caCert,
			"--requestheader-allowed-names=" + frontProxyName,
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + c.pki.proxyCert,
			"--proxy-client-key-file=" + c.pki.proxyKey,
			"--kubelet-client-certificate=" + c.pki.kubeletCert,
			"--kubelet-client-key=" + c.pki.kubeletKey,
		}, extra...)...)
		if err != nil {
			return nil, err
		}
		return p, p.waitHTTP(c.client, c.URL+"/readyz", apiserverReadyTimeout)
	})
}

// httpClient returns a client that trusts the cluster's CA and presents the
// admin certificate.
func (c *Cluster) httpClient() (*http.Client, error) {
	caPEM, err := os.ReadFile(c.pki.caCert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in " + c.pki.caCert)
	}
	cert, err := tls.LoadX509KeyPair(c.pki.adminCert, c.pki.adminKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}, nil
}

func (c *Cluster) writeKubeconfig(path string) error {
	b64 := func(file string) (string, error) {
		data, err := os.ReadFile(file)
		return base64.StdEncoding.EncodeToString(data), err
	}
	ca, err := b64(c.pki.caCert)
	if err != nil {
		return err
	}
	cert, err := b64(c.pki.adminCert)
	if err != nil {
		return err
	}
	key, err := b64(c.pki.adminKey)
	if err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: k8senv
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: k8senv
  context:
    cluster: k8senv
    user: admin
current-context: k8senv
`, c.URL, ca, cert, key)
	return os.WriteFile(path, []byte(config), 0o600)
}

// stop kills the cluster's processes, newest first, and waits for them.
func (c *Cluster) stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].kill()
	}
}

// printLogs prints the end of each process's log.
func (c *Cluster) printLogs(t testing.TB) {
	logs, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
	for _, path := range logs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		t.Logf("k8senv: last lines of %s:\n%s", filepath.Base(path), tail(string(data), 60))
	}
}

// process is one running component; its output goes to log.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it has exited
	err  error         // how it exited, once done is closed
}

// start starts the named binary with args, its output written to
// Dir/NAME.log (emptied first: it keeps the last try), and records it to be
// stopped with the cluster.
func (c *Cluster) start(name string, args ...string) (*process, error) {
	return c.startBin(name, c.Bin(name), args...)
}

// startBin is start for a binary at path, logged as name.
func (c *Cluster) startBin(name, path string, args ...string) (*process, error) {
	logPath := filepath.Join(c.Dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(path, args...)
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// errExited reports a process that exited while being waited for.
type errExited struct {
	name, log string
	err       error
}

func (e *errExited) Error() string {
	return fmt.Sprintf("%s exited before it was ready (%v); its log:\n%s", e.name, e.err, tailFile(e.log, 30))
}

// waitHTTP polls url until it answers 200, the process exits, or timeout.
func (p *process) waitHTTP(client *http.Client, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			body := make([]byte, 2048)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body[:n])))
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return &errExited{name: p.name, log: p.log, err: p.err}
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; %s last answered: %s", p.name, timeout, url, tail(last, 20))
		}
	}
}

// retryPortClash runs start up to three times while it fails because the
// port it picked was taken between freePort and the process binding it. A
// process that failed is killed before the next try.
func retryPortClash(start func() (*process, error)) error {
	var err error
	for try := 0; try < 3; try++ {
		var p *process
		p, err = start()
		if err == nil {
			return nil
		}
		if p != nil {
			p.kill()
		}
		var exited *errExited
		if !errors.As(err, &exited) || !strings.Contains(tailFile(exited.log, 30), "address already in use") {
			return err
		}
	}
	return err
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tailFile(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(string(data), lines)
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
