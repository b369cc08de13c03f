package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/httpserve"
	"vessel.dev/vessel/internal/k8s/vnode"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// ControlPlane is what the bridge needs of Vessel's control plane;
// *server.Server implements it in process (the CLI wires it, so the
// compiler checks it) and Remote over HTTP. The bridge does not import the
// server.
type ControlPlane interface {
	FargateProfiles(ctx context.Context, cluster string) ([]agentproto.FargateProfile, error)
	SubmitTask(ctx context.Context, t *task.Task) (*task.Task, error)
	StopTaskWith(ctx context.Context, cluster, id, code, reason string) error
	TaskSnapshot(ctx context.Context) ([]*task.Task, error)
	Changes() <-chan struct{}
	HostAlive(hostID string) bool
	TaskLogs(ctx context.Context, cluster, id string, o agentproto.LogOptions, emit func(agentproto.LogLine) error) error
	TaskExec(ctx context.Context, cluster, id, container string, p runtime.ExecProcess) (int, error)
	// TaskPortForward connects to port of a running task's own address
	// from the host that runs it (a port-forward); ctx bounds the
	// connection's life and the caller closes it.
	TaskPortForward(ctx context.Context, cluster, id string, port int) (agentproto.Conn, error)
}

// Default ports of the bridge's servers.
const (
	DefaultWebhookPort = 9443
	DefaultKubeletPort = 10350
)

// Config configures the bridge.
type Config struct {
	// Kube is the cluster's API server. Required.
	Kube *rest.Config
	// Cluster is the Vessel (EKS) cluster whose profiles select pods and
	// whose tasks run them; "default" when empty.
	Cluster string
	// ControlPlane runs the tasks. Required.
	ControlPlane ControlPlane
	// CertDir keeps the bridge's CA and serving certificate. Required.
	CertDir string
	// Address is where the API server reaches this host: the webhook and
	// kubelet API certificates name it and nodes advertise it. Required.
	Address string
	// WebhookPort and KubeletPort are the servers' ports (0 = defaults).
	WebhookPort, KubeletPort int
	// KubeletClientCA verifies the client certificates the API server
	// presents to the kubelet API; nil = the CA of Kube.
	KubeletClientCA []byte
	// KubernetesServiceHost/Port is the API server as pods reach it; ""
	// = the ClusterIP of default/kubernetes and its port.
	KubernetesServiceHost string
	KubernetesServicePort int32
	// ClusterDNS are the DNS servers of pods with dnsPolicy ClusterFirst,
	// the kubelet's --cluster-dns; empty = the ClusterIP of the
	// kube-system/kube-dns Service, looked up for each pod (none while it
	// does not exist: such pods get their host's resolvers, as with a
	// kubelet that has no cluster DNS).
	ClusterDNS []string
	// ClusterDomain is the cluster's DNS domain, the kubelet's
	// --cluster-domain; "" = cluster.local.
	ClusterDomain string
	// Resync is how often pods waiting for a profile are looked at again;
	// 5 s by default.
	Resync time.Duration
	Logger *slog.Logger
}

// Bridge runs pods that Fargate profiles select as Vessel tasks, each on a
// virtual node of its own.
type Bridge struct {
	cfg  Config
	log  *slog.Logger
	kube kubernetes.Interface

	certs      *certs
	pods       corelisters.PodLister
	podsSynced cache.InformerSynced
	queue      workqueue.TypedRateLimitingInterface[string]

	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder // the scheduler's

	mu sync.Mutex
	// tasks holds the newest task of each pod, by pod UID.
	tasks map[types.UID]*task.Task
	// placing are pods whose task is submitted but that are not bound.
	placing map[types.UID]*placement
	// nodes are the virtual nodes the bridge runs, by name.
	nodes map[string]*virtualNode
	// bound are the pods bound to Vessel nodes the pod controller handed
	// over, by namespace/name.
	bound map[string]*corev1.Pod
	// notifyPod is the pod controller's status callback.
	notifyPod func(*corev1.Pod)
	// events already emitted per pod UID, so that each is emitted once.
	emitted map[types.UID]map[string]bool
	// lastWarning rate-limits FailedScheduling events per pod.
	lastWarning map[types.UID]string

	kubeServiceHost string
	kubeServicePort int32
	clientCAs       *x509.CertPool
	access          sarCache
	kubeCA          []byte
}

// placement is a pod on its way to a node.
type placement struct {
	pod      *corev1.Pod
	taskID   string
	capacity string // the CapacityProvisioned annotation
	binding  bool
}

// New checks cfg and returns a bridge; nothing runs until Run.
func New(cfg Config) (*Bridge, error) {
	switch {
	case cfg.Kube == nil:
		return nil, errors.New("bridge: a kubeconfig is required")
	case cfg.ControlPlane == nil:
		return nil, errors.New("bridge: a control plane is required")
	case cfg.CertDir == "":
		return nil, errors.New("bridge: a certificate directory is required")
	case cfg.Address == "":
		return nil, errors.New("bridge: the address the API server reaches this host at is required")
	}
	if err := (&task.DNSConfig{Nameservers: cfg.ClusterDNS, Searches: nonEmpty(cfg.ClusterDomain)}).Validate(); err != nil {
		return nil, fmt.Errorf("bridge: cluster DNS: %w", err)
	}
	if cfg.Cluster == "" {
		cfg.Cluster = task.DefaultCluster
	}
	if cfg.WebhookPort == 0 {
		cfg.WebhookPort = DefaultWebhookPort
	}
	if cfg.KubeletPort == 0 {
		cfg.KubeletPort = DefaultKubeletPort
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	kc := rest.CopyConfig(cfg.Kube)
	if kc.QPS == 0 {
		// Each pod costs a dozen calls (token, binding, node, lease,
		// status, events); client-go's default of 5/s would make a burst
		// of pods wait minutes. The API server's own fairness limits us.
		kc.QPS, kc.Burst = 1000, 2000
	}
	cs, err := kubernetes.NewForConfig(kc)
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	kubeCA := cfg.Kube.TLSClientConfig.CAData
	if len(kubeCA) == 0 && cfg.Kube.TLSClientConfig.CAFile != "" {
		if kubeCA, err = os.ReadFile(cfg.Kube.TLSClientConfig.CAFile); err != nil {
			return nil, fmt.Errorf("bridge: reading the cluster CA: %w", err)
		}
	}
	clientCA := cfg.KubeletClientCA
	if len(clientCA) == 0 {
		clientCA = kubeCA
	}
	pool := x509.NewCertPool()
	if len(clientCA) == 0 || !pool.AppendCertsFromPEM(clientCA) {
		return nil, errors.New("bridge: no CA to verify the API server's kubelet client certificates: give --kubelet-client-ca")
	}
	b := &Bridge{cfg: cfg, log: cfg.Logger.With("component", "k8s-bridge"), kube: cs,
		tasks: map[types.UID]*task.Task{}, placing: map[types.UID]*placement{}, nodes: map[string]*virtualNode{},
		bound: map[string]*corev1.Pod{}, emitted: map[types.UID]map[string]bool{}, lastWarning: map[types.UID]string{},
		clientCAs: pool, kubeCA: kubeCA, access: sarCache{ans: map[string]time.Time{}},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vessel-scheduler"}),
	}
	return b, nil
}

// Run runs the bridge until ctx is done: the webhook server, the kubelet
// API, the scheduler, the pod controller and the nodes' controllers.
func (b *Bridge) Run(ctx context.Context) error {
	routeLibraryLogs(b.cfg.Logger)
	host, _ := os.Hostname()
	c, err := loadCerts(b.cfg.CertDir, uniq(b.cfg.Address, "127.0.0.1", "localhost", host))
	if err != nil {
		return fmt.Errorf("bridge: certificates: %w", err)
	}
	b.certs = c
	if err := b.resolveKubernetesService(ctx); err != nil {
		return err
	}
	if ns, err := b.kube.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); err == nil {
		if c := ns.Annotations[AnnotationCluster]; c != "" && c != b.cfg.Cluster {
			b.log.Warn("`vessel k8s install` recorded another Vessel cluster for this Kubernetes cluster", "installed", c, "serving", b.cfg.Cluster)
		}
	}
	if err := b.reconcileWebhooks(ctx); err != nil {
		b.log.Warn("the pod webhooks are not installed or cannot be updated; run `vessel k8s install`", "err", err)
	}

	b.broadcaster = record.NewBroadcaster(record.WithContext(ctx))
	b.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: b.kube.CoreV1().Events("")})
	defer b.broadcaster.Shutdown()
	b.recorder = b.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vessel-scheduler"})

	factory := informers.NewSharedInformerFactory(b.kube, 10*time.Minute)
	podInformer := factory.Core().V1().Pods()
	b.pods = podInformer.Lister()
	b.podsSynced = podInformer.Informer().HasSynced
	podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { b.podEvent(o) },
		UpdateFunc: func(_, o any) { b.podEvent(o) },
		DeleteFunc: func(o any) { b.podGone(o) },
	})

	// The task view must be loaded before the pod controller asks for
	// pods, so that a restart adopts what runs.
	if err := b.syncTasks(ctx); err != nil {
		return err
	}
	pc, err := vknode.NewPodController(vknode.PodControllerConfig{
		PodClient:                 b.kube.CoreV1(),
		PodInformer:               podInformer,
		EventRecorder:             b.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vessel-kubelet"}),
		Provider:                  &podProvider{b},
		ConfigMapInformer:         factory.Core().V1().ConfigMaps(),
		SecretInformer:            factory.Core().V1().Secrets(),
		ServiceInformer:           factory.Core().V1().Services(),
		PodEventFilterFunc:        func(_ context.Context, p *corev1.Pod) bool { return isVesselNode(p.Spec.NodeName) },
		SkipDownwardAPIResolution: true,
		// The default limiters allow 10 updates a second overall, which a
		// burst of pods (several status changes each) outruns by far.
		SyncPodsFromKubernetesRateLimiter:    podQueueLimiter(),
		SyncPodStatusFromProviderRateLimiter: podQueueLimiter(),
		DeletePodsFromKubernetesRateLimiter:  podQueueLimiter(),
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced) {
		return ctx.Err()
	}
	if err := b.adoptNodes(ctx); err != nil {
		return err
	}

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("bridge %s: %w", name, err)
			}
		}()
	}
	whs := webhook.NewServer(webhook.Options{Port: b.cfg.WebhookPort, CertDir: b.cfg.CertDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }}})
	// controller-runtime's server sets no ReadTimeout: each review's
	// body gets one here.
	whs.Register(MutatePath, httpserve.BodyDeadline(reviewHandler(b.mutate), httpserve.ReadTimeout))
	whs.Register(ValidatePath, httpserve.BodyDeadline(reviewHandler(b.validate), httpserve.ReadTimeout))
	run("webhook server", func() error { return whs.Start(ctx) })
	run("kubelet API", func() error { return b.serveKubeletAPI(ctx) })
	run("pod controller", func() error { return pc.Run(ctx, 4) })
	run("task watch", func() error { b.watchTasks(ctx); return nil })
	run("scheduler", func() error { b.schedule(ctx); return nil })
	run("housekeeping", func() error { b.housekeeping(ctx); return nil })
	b.log.Info("Kubernetes bridge running", "cluster", b.cfg.Cluster, "webhook", b.webhookURL(),
		"kubelet_api", net.JoinHostPort(b.cfg.Address, strconv.Itoa(b.cfg.KubeletPort)))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	b.queue.ShutDown()
	wg.Wait()
	return runErr
}

// podQueueLimiter retries a failing pod with back-off (10 ms to 10 s)
// and lets the queue as a whole run at 1,000 items a second.
func podQueueLimiter() workqueue.TypedRateLimiter[any] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[any](10*time.Millisecond, 10*time.Second),
		&workqueue.TypedBucketRateLimiter[any]{Limiter: rate.NewLimiter(rate.Limit(1000), 2000)},
	)
}

// webhookURL is the base URL of the webhook server.
func (b *Bridge) webhookURL() string {
	return "https://" + net.JoinHostPort(b.cfg.Address, strconv.Itoa(b.cfg.WebhookPort))
}

// WebhookURL is the base URL for Config's webhook server.
func WebhookURL(address string, port int) string {
	if port == 0 {
		port = DefaultWebhookPort
	}
	return "https://" + net.JoinHostPort(address, strconv.Itoa(port))
}

// reconcileWebhooks points the installed webhook configurations at this
// bridge: its URL and its CA.
func (b *Bridge) reconcileWebhooks(ctx context.Context) error {
	ca := b.certs.CABundle()
	mut, val := webhookConfigs(InstallOptions{WebhookURL: b.webhookURL(), CABundle: ca})
	mc := b.kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cur, err := mc.Get(ctx, MutatingName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if len(cur.Webhooks) != 1 || !sameBundle(cur.Webhooks[0].ClientConfig.CABundle, ca) ||
		cur.Webhooks[0].ClientConfig.URL == nil || *cur.Webhooks[0].ClientConfig.URL != *mut.Webhooks[0].ClientConfig.URL {
		cur.Webhooks = mut.Webhooks
		if _, err := mc.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	vc := b.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	vcur, err := vc.Get(ctx, ValidatingName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if len(vcur.Webhooks) != 1 || !sameBundle(vcur.Webhooks[0].ClientConfig.CABundle, ca) ||
		vcur.Webhooks[0].ClientConfig.URL == nil || *vcur.Webhooks[0].ClientConfig.URL != *val.Webhooks[0].ClientConfig.URL {
		vcur.Webhooks = val.Webhooks
		if _, err := vc.Update(ctx, vcur, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// resolveKubernetesService finds the API server's address as pods see it.
func (b *Bridge) resolveKubernetesService(ctx context.Context) error {
	b.kubeServiceHost, b.kubeServicePort = b.cfg.KubernetesServiceHost, b.cfg.KubernetesServicePort
	if b.kubeServiceHost != "" {
		if b.kubeServicePort == 0 {
			b.kubeServicePort = 443
		}
		return nil
	}
	svc, err := b.kube.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			b.log.Warn("the default/kubernetes service does not exist: pods get no KUBERNETES_SERVICE_* variables")
			return nil
		}
		return fmt.Errorf("bridge: reading the kubernetes service: %w", err)
	}
	b.kubeServiceHost = svc.Spec.ClusterIP
	for _, p := range svc.Spec.Ports {
		if p.Name == "https" || b.kubeServicePort == 0 {
			b.kubeServicePort = p.Port
		}
	}
	return nil
}

// housekeeping renews the serving certificate and removes nodes whose
// pods are gone.
func (b *Bridge) housekeeping(ctx context.Context) {
	t := time.NewTicker(b.cfg.Resync)
	defer t.Stop()
	lastCert := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(lastCert) > time.Hour {
			lastCert = time.Now()
			if err := b.certs.ensure(time.Now()); err != nil {
				b.log.Error("renewing the serving certificate", "err", err)
			}
		}
		// Installed after the bridge started, or changed by hand: the
		// webhooks are pointed back at this bridge.
		if err := b.reconcileWebhooks(ctx); err != nil && !apierrors.IsNotFound(err) {
			b.log.Warn("updating the webhooks", "err", err)
		}
		b.collectNodes(ctx)
		b.enqueueWaiting()
	}
}

// isVesselNode says whether a node name is one of Vessel's.
func isVesselNode(name string) bool {
	return len(name) > len(vnode.NodeNamePrefix) && name[:len(vnode.NodeNamePrefix)] == vnode.NodeNamePrefix
}

func uniq(ss ...string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// podKey is namespace/name.
func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// taskOfPod returns the newest task of the pod, or nil.
func (b *Bridge) taskOfPod(uid types.UID) *task.Task {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tasks[uid]
}
