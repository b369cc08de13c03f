// Package kubeproxy runs the real kube-proxy on a Vessel host, so that the
// host's sandboxes reach the cluster's ClusterIP Services and their own
// pods are reachable through them: kube-proxy programs the host's iptables,
// and every packet of a sandbox passes through the host (its veth or tap
// sits on a bridge of the host). Vessel does not reimplement kube-proxy:
// the real one follows Services and EndpointSlices exactly as it does on
// any node.
//
// What the host needs besides: IP forwarding, and br_netfilter with
// bridge-nf-call-iptables=1 so that a sandbox reaching a Service whose
// endpoint sits on the same bridge gets its answer un-NATed (the answer is
// bridged, not routed). Run turns both on and leaves them on, as a
// Kubernetes node does.
//
// One kube-proxy per host: a host that is also a regular node already runs
// one, and must not be given another (they would rewrite each other's
// chains).
package kubeproxy

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Config says which kube-proxy to run and for which cluster.
type Config struct {
	// Binary is the kube-proxy executable. Required.
	Binary string
	// Kubeconfig is the cluster's kubeconfig. Required.
	Kubeconfig string
	// HostnameOverride is the name kube-proxy runs under (the host's ID).
	HostnameOverride string
	// ClusterCIDRs are the task subnets: traffic from outside them to a
	// Service is masqueraded.
	ClusterCIDRs []string
	// NodeIP is the host's address; kube-proxy takes it as its node IP
	// instead of waiting for a Node object, which a Vessel host has not.
	NodeIP string
	// Dir holds kube-proxy's configuration file. Required.
	Dir    string
	Logger *slog.Logger
}

// Run prepares the host and runs kube-proxy until ctx is done, restarting
// it (with back-off up to 30 s) when it exits.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Binary == "" || cfg.Kubeconfig == "" || cfg.Dir == "" {
		return errors.New("kube-proxy: Binary, Kubeconfig and Dir are required")
	}
	if _, err := os.Stat(cfg.Binary); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "kube-proxy")
	if err := prepareHost(ctx); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(cfg.Dir, "kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(configFile(cfg)), 0o600); err != nil {
		return err
	}
	backoff := time.Second
	for ctx.Err() == nil {
		began := time.Now()
		cmd := exec.CommandContext(ctx, cfg.Binary, "--config="+path, "--v=1")
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting kube-proxy: %w", err)
		}
		log.Info("kube-proxy started", "pid", cmd.Process.Pid, "binary", cfg.Binary)
		go relay(out, log)
		err = cmd.Wait()
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > time.Minute {
			backoff = time.Second
		}
		log.Warn("kube-proxy exited; restarting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	return nil
}

// relay copies kube-proxy's log lines into the logger: its errors as
// warnings, the rest at debug level.
func relay(r io.Reader, log *slog.Logger) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := sc.Text(); len(line) > 0 && (line[0] == 'E' || line[0] == 'F') {
			log.Warn(line)
		} else {
			log.Debug(line)
		}
	}
}

// configFile is kube-proxy's KubeProxyConfiguration: iptables mode, no
// health or metrics port (Vessel supervises the process; its own /metrics
// and /healthz serve the host), the host's conntrack settings left alone.
func configFile(cfg Config) string {
	cidrs := ""
	for i, c := range cfg.ClusterCIDRs {
		if i > 0 {
			cidrs += ","
		}
		cidrs += c
	}
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: %q}
hostnameOverride: %q
bindAddress: %q
clusterCIDR: %q
healthzBindAddress: ""
metricsBindAddress: ""
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {syncPeriod: 30s, minSyncPeriod: 0s}
`, cfg.Kubeconfig, cfg.HostnameOverride, cmp.Or(cfg.NodeIP, "0.0.0.0"), cidrs)
}

// prepareHost turns on IP forwarding and bridged traffic through iptables.
func prepareHost(ctx context.Context) error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("kube-proxy: enabling IP forwarding: %w", err)
	}
	const brnf = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	if _, err := os.Stat(brnf); err != nil {
		if out, err := exec.CommandContext(ctx, "modprobe", "br_netfilter").CombinedOutput(); err != nil {
			return fmt.Errorf("kube-proxy: loading br_netfilter: %w: %s", err, out)
		}
	}
	if err := os.WriteFile(brnf, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("kube-proxy: enabling bridge-nf-call-iptables: %w", err)
	}
	return nil
}
