package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/k8s/bridge"
	"vessel.dev/vessel/internal/server"
)

// k8sOptions are the flags that connect Vessel to a Kubernetes cluster,
// shared by `vessel server` and `vessel k8s`.
type k8sOptions struct {
	kubeconfig      string
	cluster         string
	address         string
	webhookPort     int
	kubeletPort     int
	kubeletClientCA string
	clusterDNS      []string
	clusterDomain   string
}

func (o *k8sOptions) addFlags(cmd *cobra.Command, withKubeconfig bool) {
	f := cmd.Flags()
	if withKubeconfig {
		f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the Kubernetes cluster whose pods Vessel runs (enables the bridge)")
	}
	f.StringVar(&o.cluster, "k8s-cluster", server.DefaultCluster, "the Vessel (EKS) cluster whose Fargate profiles select the Kubernetes cluster's pods")
	f.StringVar(&o.address, "k8s-address", "", "the address the Kubernetes API server reaches this host at, for the webhooks and the nodes' kubelet API (default: the address of the host's default route)")
	f.IntVar(&o.webhookPort, "webhook-port", bridge.DefaultWebhookPort, "port of the pod webhooks")
	f.IntVar(&o.kubeletPort, "kubelet-port", bridge.DefaultKubeletPort, "port of the kubelet API the bridge serves for its nodes")
	f.StringVar(&o.kubeletClientCA, "kubelet-client-ca", "", "PEM file of the CA of the API server's kubelet client certificates (default: the kubeconfig's CA)")

	f.StringSliceVar(&o.clusterDNS, "cluster-dns", nil, "DNS server addresses of pods with dnsPolicy ClusterFirst, as the kubelet's --cluster-dns (default: the ClusterIP of the kube-system/kube-dns Service)")
	f.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain, as the kubelet's --cluster-domain")
}

func (o *k8sOptions) restConfig() (*rest.Config, error) {
	if o.kubeconfig == "" {
		return nil, fmt.Errorf("--kubeconfig is required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig %s: %w", o.kubeconfig, err)
	}
	return cfg, nil
}

// clientset returns a client of the --kubeconfig cluster.
func (o *k8sOptions) clientset() (*kubernetes.Clientset, error) {
	cfg, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// hostAddress is the address of the host's default route, or loopback
// when there is none. No packet is sent: a UDP socket is only connected.
func (o *k8sOptions) hostAddress() string {
	if o.address != "" {
		return o.address
	}
	conn, err := net.Dial("udp", "192.0.2.1:9")
	if err != nil {
		return "127.0.0.1"
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String()
}

func certDir(dataDir string) string { return filepath.Join(dataDir, "k8s") }

func newK8sCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "k8s",
		Short: "Connect Vessel to a Kubernetes cluster (EKS-on-Fargate semantics)",
		Long: `Vessel gives any Kubernetes cluster what EKS gives with Fargate: pods that a
Fargate profile selects are handed by a webhook to Vessel's scheduler, each
runs in a sandbox of its own and shows up as a node of its own.

  vessel k8s install --kubeconfig FILE      creates the webhooks, RBAC and RuntimeClasses
  vessel server --kubeconfig FILE           runs the bridge with the control plane
  vessel k8s bridge --kubeconfig FILE --server URL
                                            runs the bridge apart, against a control plane
  vessel k8s uninstall --kubeconfig FILE    removes what install created`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newK8sInstallCommand(g), newK8sUninstallCommand(), newK8sBridgeCommand(g))
	return cmd
}

func newK8sInstallCommand(g *globals) *cobra.Command {
	o := &k8sOptions{}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Create the namespace, RBAC, RuntimeClasses and pod webhooks the bridge needs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := o.clientset()
			if err != nil {
				return err
			}
			ca, err := bridge.EnsureCA(certDir(g.dataDir))
			if err != nil {
				return err
			}
			url := bridge.WebhookURL(o.hostAddress(), o.webhookPort)
			if err := bridge.Install(context.Background(), cs, bridge.InstallOptions{WebhookURL: url, CABundle: ca, Cluster: o.cluster}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Installed: namespace %s, RBAC %s, RuntimeClasses %v, webhooks calling %s.\n"+
				"Run the bridge with: vessel server --kubeconfig %s\n", bridge.Namespace, bridge.ClusterRoleName,
				bridge.RuntimeClasses, url, o.kubeconfig)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (required)")
	cmd.Flags().StringVar(&o.address, "k8s-address", "", "the address the API server reaches the bridge at (default: the address of the host's default route)")
	cmd.Flags().IntVar(&o.webhookPort, "webhook-port", bridge.DefaultWebhookPort, "port the bridge serves the webhooks on")
	cmd.Flags().StringVar(&o.cluster, "cluster", server.DefaultCluster, "the Vessel (EKS) cluster this Kubernetes cluster is")
	return cmd
}

func newK8sUninstallCommand() *cobra.Command {
	o := &k8sOptions{}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what `vessel k8s install` created",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := o.clientset()
			if err != nil {
				return err
			}
			if err := bridge.Uninstall(context.Background(), cs); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Uninstalled the Vessel webhooks, RBAC, RuntimeClasses and namespace.")
			return nil
		},
	}
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (required)")
	return cmd
}

// startBridge runs the Kubernetes bridge beside the control plane of
// `vessel server --kubeconfig`: for the process's life, or, whileLeading
// (replicas on etcd), during each term of this replica's leadership
// (Server.OnLeadership; call it before Server.Run).
func startBridge(ctx context.Context, wg *sync.WaitGroup, g *globals, o *k8sOptions, srv *server.Server, log *slog.Logger, stop func(), whileLeading bool) error {
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	var clientCA []byte
	if o.kubeletClientCA != "" {
		if clientCA, err = os.ReadFile(o.kubeletClientCA); err != nil {
			return fmt.Errorf("reading --kubelet-client-ca: %w", err)
		}
	}
	newBridge := func() (*bridge.Bridge, error) {
		return bridge.New(bridge.Config{Kube: cfg, Cluster: o.cluster, ControlPlane: srv, CertDir: certDir(g.dataDir),
			Address: o.hostAddress(), WebhookPort: o.webhookPort, KubeletPort: o.kubeletPort, KubeletClientCA: clientCA,
			ClusterDNS: o.clusterDNS, ClusterDomain: o.clusterDomain, Logger: log})
	}
	b, err := newBridge()
	if err != nil {
		return err
	}
	if whileLeading {
		// One of several replicas: a bridge per term of leadership, which
		// adopts the nodes and pods as a restarted bridge does.
		srv.OnLeadership(func(term context.Context) {
			if b == nil {
				if b, err = newBridge(); err != nil {
					log.Error("Kubernetes bridge not started", "err", err)
					stop()
					return
				}
			}
			log.Info("this replica leads: Kubernetes bridge started")
			if err := b.Run(term); err != nil && term.Err() == nil {
				log.Error("Kubernetes bridge stopped", "err", err)
				stop()
			}
			b = nil
		})
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := b.Run(ctx); err != nil {
			log.Error("Kubernetes bridge stopped", "err", err)
			stop()
		}
	}()
	return nil
}

func newK8sBridgeCommand(g *globals) *cobra.Command {
	o := &k8sOptions{}
	var logLevel string
	cmd := &cobra.Command{
		Use:   "bridge --kubeconfig FILE [--server URL[,URL...]]",
		Short: "Run the Kubernetes bridge apart from the control plane",
		Long: `Runs the bridge (webhooks, scheduler, virtual nodes and their kubelet API)
against a control plane elsewhere, over its SigV4-signed API: the access key
comes from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the data directory.
Port-forward dials pod IPs from this host, so run it where the task subnets
are routed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg, err := o.restConfig()
			if err != nil {
				return err
			}
			key := auth.Key{AccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY")}
			if key.AccessKeyID == "" {
				keys, err := auth.Load(g.dataDir)
				if err != nil {
					return fmt.Errorf("no access key: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or give the server's --data-dir: %w", err)
				}
				key = keys[0]
			}
			client, err := agentproto.NewClient(g.endpoint, key, g.region)
			if err != nil {
				return err
			}
			// An https control plane is trusted through AWS_CA_BUNDLE or
			// the data directory's tls/ca.crt.
			tlsCfg, err := g.tlsConfig()
			if err != nil {
				return err
			}
			client.WithTLS(tlsCfg).WithLogger(log)
			var clientCA []byte
			if o.kubeletClientCA != "" {
				if clientCA, err = os.ReadFile(o.kubeletClientCA); err != nil {
					return fmt.Errorf("reading --kubelet-client-ca: %w", err)
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			remote := bridge.NewRemote(client, o.cluster, log)
			go remote.Run(ctx)
			b, err := bridge.New(bridge.Config{Kube: cfg, Cluster: o.cluster, ControlPlane: remote, CertDir: certDir(g.dataDir),
				Address: o.hostAddress(), WebhookPort: o.webhookPort, KubeletPort: o.kubeletPort, KubeletClientCA: clientCA,
				Logger: log})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Kubernetes bridge for control plane %s\n", g.endpoint)
			return b.Run(ctx)
		},
	}
	o.addFlags(cmd, true)
	cmd.Flags().StringVar(&g.endpoint, "server", g.endpoint, "control plane URL (same as --endpoint), or the URLs of several replicas separated by commas (the bridge uses any and moves to another when one stops answering)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}
