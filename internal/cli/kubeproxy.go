package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/k8s/kubeproxy"
	"vessel.dev/vessel/internal/network"
)

// kubeProxyOptions run the real kube-proxy on a host, so that its
// sandboxes reach the cluster's ClusterIP Services: `vessel server` (for
// its own host, with the bridge's --kubeconfig) and `vessel agent` (with a
// --kubeconfig of its own) share them.
type kubeProxyOptions struct {
	binary string
	// kubeconfig is the cluster's: the agent's --kubeconfig, or the
	// server's bridge one (set by runServer).
	kubeconfig string
	// agent: the options are `vessel agent`'s (for the error messages).
	agent bool
}

// addFlags adds --kube-proxy, and on an agent --kubeconfig.
func (o *kubeProxyOptions) addFlags(cmd *cobra.Command, agent bool) {
	o.agent = agent
	f := cmd.Flags()
	f.StringVar(&o.binary, "kube-proxy", "", "kube-proxy binary to run on this host with --kubeconfig, so that its sandboxes reach the cluster's ClusterIP Services (not on a host that is also a regular node: it runs one already)")
	if agent {
		f.StringVar(&o.kubeconfig, "kubeconfig", "", "with --kube-proxy: kubeconfig of the Kubernetes cluster whose Services this host's sandboxes reach (kube-proxy reads Services and EndpointSlices with it)")
	}
}

// validate checks the flags before the host starts: --kube-proxy needs a
// kubeconfig, an agent's --kubeconfig is only for --kube-proxy, the binary
// is an executable file and the kubeconfig reads.
func (o *kubeProxyOptions) validate() error {
	switch {
	case o.binary == "" && o.kubeconfig != "" && o.agent:
		return errdefs.InvalidArgument("--kubeconfig is given without --kube-proxy: an agent uses the cluster only to run kube-proxy; add --kube-proxy BIN, or drop --kubeconfig")
	case o.binary == "":
		return nil
	case o.kubeconfig == "":
		return errdefs.InvalidArgument("--kube-proxy needs --kubeconfig: the kubeconfig of the cluster whose Services kube-proxy follows")
	}
	fi, err := os.Stat(o.binary)
	if err != nil {
		return errdefs.InvalidArgument("--kube-proxy %s: %v: give the path of the kube-proxy executable", o.binary, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errdefs.InvalidArgument("--kube-proxy %s is not an executable file: give the path of the kube-proxy executable", o.binary)
	}
	if _, err := clientcmd.LoadFromFile(o.kubeconfig); err != nil {
		return errdefs.InvalidArgument("--kubeconfig %s: %v: give a readable kubeconfig", o.kubeconfig, err)
	}
	return nil
}

// start runs kube-proxy for this host's sandboxes until ctx is done (wg
// counts it): named hostID, with nodeIP as its node IP; traffic to a
// Service from outside subnets (the task subnets) is masqueraded. Its
// configuration lives in dataDir/kube-proxy. Nothing happens without
// --kube-proxy.
func (o *kubeProxyOptions) start(ctx context.Context, wg *sync.WaitGroup, dataDir, hostID, nodeIP string, subnets []network.Subnet, log *slog.Logger) error {
	if o.binary == "" {
		return nil
	}
	if err := o.validate(); err != nil {
		return err
	}
	cidrs := make([]string, 0, len(subnets))
	for _, s := range subnets {
		cidrs = append(cidrs, s.CIDR.String())
	}
	cfg := kubeproxy.Config{Binary: o.binary, Kubeconfig: o.kubeconfig, HostnameOverride: hostID, NodeIP: nodeIP,
		ClusterCIDRs: cidrs, Dir: filepath.Join(dataDir, "kube-proxy"), Logger: log}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := kubeproxy.Run(ctx, cfg); err != nil {
			log.Error("kube-proxy stopped", "err", err)
		}
	}()
	return nil
}
