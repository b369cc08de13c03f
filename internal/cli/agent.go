package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/fsutil"
	"vessel.dev/vessel/internal/httpserve"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/tlsutil"
)

// agentOptions are the flags of `vessel agent`.
type agentOptions struct {
	server     string
	logLevel   string
	listen     string
	advertise  string
	token      string
	caCertHash string
	host       hostOptions
	dns        dnsOptions
	kubeProxy  kubeProxyOptions
}

// Files of a joined host in its data directory.
const (
	agentCredentialsFile = "agent-credentials.json"
	agentCAFile          = "agent-ca.crt"
	agentTLSDir          = "agent-tls"
)

// agentCredentials is what a host keeps after joining.
type agentCredentials struct {
	Server          string `json:"server"`
	HostID          string `json:"hostId"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
}

func newAgentCommand(g *globals) *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent --server URL[,URL...] --token ID.SECRET --ca-cert-hash sha256:HEX",
		Short: "Run a host agent that joins a control plane's fleet",
		Long: `Joins this machine to the control plane at --server and runs the tasks placed
on it. The first start presents a join token (` + "`vessel host token create`" + ` prints
the whole command): the agent fetches the control plane's CA, checks it
against --ca-cert-hash, and from then on trusts that CA only; it receives a
credential bound to its host ID and keeps it, with the CA, in its data
directory (later starts need no token). The agent serves its tasks' logs and
execs to the control plane on --listen, over TLS, accepting requests signed
with its own credential only.

Without a token or a kept credential, requests are signed with the access
key from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the data directory (set-ups
from before join tokens).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, g) },
	}
	cmd.Flags().StringVar(&o.server, "server", os.Getenv("VESSEL_ENDPOINT"), "control plane URL, or the URLs of several replicas separated by commas (the agent uses any and moves to another when one stops answering)")
	cmd.Flags().StringVar(&o.token, "token", "", "join token (ID.SECRET) from `vessel host token create`; needed on the first start only")
	cmd.Flags().StringVar(&o.caCertHash, "ca-cert-hash", "", "sha256:HEX hash of the control plane CA's public key, printed with the token; required with an https --server")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cmd.Flags().StringVar(&o.listen, "listen", ":0", "address of the endpoint serving this host's task logs and execs to the control plane (default: a free port)")
	cmd.Flags().StringVar(&o.advertise, "advertise", "", "URL the control plane reaches that endpoint at (default: https://ADDRESS:PORT, ADDRESS being the one this host reaches --server from)")
	o.host.addFlags(cmd, false)
	o.dns.addFlags(cmd, false)
	o.kubeProxy.addFlags(cmd, true)
	return cmd
}

func (o *agentOptions) run(cmd *cobra.Command, g *globals) error {
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	if o.server == "" {
		return fmt.Errorf("--server is required: the control plane's URL, e.g. https://10.0.0.1:8600, or several replicas' URLs separated by commas")
	}
	if _, err := agentproto.ParseEndpoints(o.server); err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	if err := o.kubeProxy.validate(); err != nil {
		return err
	}
	if err := o.host.parseWarmPools(); err != nil {
		return err
	}
	if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	key, caPEM, err := o.credentials(ctx, cmd, g)
	if err != nil {
		return err
	}
	client, err := agentproto.NewClient(o.server, key, g.region)
	if err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if caPEM != nil {
		tlsCfg, err = tlsutil.ClientConfig(caPEM)
	} else {
		tlsCfg, err = g.tlsConfig()
	}
	if err != nil {
		return err
	}
	client.WithTLS(tlsCfg).WithLogger(log)
	ln, endpoint, err := o.listenEndpoint()
	if err != nil {
		return err
	}
	// The endpoint speaks TLS with a certificate of its own, whose hash
	// the control plane pins when this host registers.
	host, _, _ := net.SplitHostPort(strings.TrimPrefix(endpoint, "https://"))
	pair, err := tlsutil.LoadOrCreateSelfSigned(filepath.Join(g.dataDir, agentTLSDir), host)
	if err != nil {
		ln.Close()
		return fmt.Errorf("the agent endpoint's certificate: %w", err)
	}
	tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	defer tlsLn.Close()
	o.host.endpoint = endpoint
	o.host.endpointPin = tlsutil.CertSHA256(pair.Certificate[0])
	// The DNS server listens on the gateways of the subnets the control
	// plane gives this host, before its network opens (its tasks name it);
	// a host of simulated sandboxes only, which asks for none, on those
	// --subnet defines.
	var names *agent.NameFeed
	var served []network.Subnet // the subnets this host's tasks are on
	namesStarted := false
	o.host.networkReady = func(ctx context.Context, subnets []network.Subnet) (err error) {
		names, err = o.startNames(ctx, client, subnets, log)
		namesStarted = true
		served = subnets
		return err
	}
	o.host.addressTarget = controlPlaneHostPort(o.server)
	a, report, err := o.host.newAgent(ctx, g.dataDir, client, log)
	if err != nil {
		return err
	}
	if !namesStarted {
		defined, err := parseSubnets(o.host.subnets, true)
		if err != nil {
			return err
		}
		var withCIDR []agentproto.FleetSubnet
		for _, s := range defined {
			if s.CIDR.IsValid() {
				withCIDR = append(withCIDR, s)
			}
		}
		served = networkSubnets(withCIDR)
		if names, err = o.startNames(ctx, client, served, log); err != nil {
			return err
		}
	}
	// The host's DNS server and kube-proxy run until the agent stops.
	var wg sync.WaitGroup
	hostCtx, stopHost := context.WithCancel(ctx)
	defer wg.Wait()
	defer stopHost()
	runNames(hostCtx, &wg, names, a.HostID())
	nodeIP := ""
	if addr, err := o.host.address(); err == nil && addr.IsValid() {
		nodeIP = addr.String()
	}
	if err := o.kubeProxy.start(hostCtx, &wg, g.dataDir, a.HostID(), nodeIP, served, log); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Runtimes on this host: %s\n", strings.Join(report, "; "))
	fmt.Fprintf(cmd.ErrOrStderr(), "Serving task logs and execs to the control plane on %s\n", endpoint)
	// The control plane signs its calls with this host's own credential:
	// no other key is accepted here.
	verify, err := auth.NewVerifier(auth.VerifierConfig{Keys: []auth.Key{key}})
	if err != nil {
		return err
	}
	httpSrv := httpserve.New(verify.Middleware(a.Handler(), writeAgentAuthError))
	go func() {
		if err := httpSrv.Serve(tlsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("agent endpoint failed", "err", err)
		}
	}()
	defer httpSrv.Close()
	err = a.Run(ctx)
	a.DropPools(context.Background())
	return err
}

// credentials returns the key this host signs with and the CA it trusts
// (nil: the system's, or plain HTTP): kept from an earlier join, got now by
// joining with --token, or (set-ups from before join tokens) an access key
// from the environment or the data directory.
func (o *agentOptions) credentials(ctx context.Context, cmd *cobra.Command, g *globals) (auth.Key, []byte, error) {
	credPath, caPath := filepath.Join(g.dataDir, agentCredentialsFile), filepath.Join(g.dataDir, agentCAFile)
	if data, err := os.ReadFile(credPath); err == nil {
		var c agentCredentials
		if err := json.Unmarshal(data, &c); err != nil || c.AccessKeyID == "" {
			return auth.Key{}, nil, fmt.Errorf("%s is damaged (%v): remove it and join again with --token", credPath, err)
		}
		o.host.hostID = c.HostID
		caPEM, err := os.ReadFile(caPath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return auth.Key{}, nil, err
		}
		return auth.Key{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, Policy: auth.PolicyHost, HostID: c.HostID}, caPEM, nil
	}
	if o.token == "" {
		key := auth.Key{AccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY")}
		if key.AccessKeyID == "" {
			keys, err := auth.Load(g.dataDir)
			if err != nil {
				return auth.Key{}, nil, fmt.Errorf("this host has not joined: give --token and --ca-cert-hash (vessel host token create prints them): %w", err)
			}
			key = keys[0]
		}
		return key, nil, nil
	}
	endpoints, err := agentproto.ParseEndpoints(o.server)
	if err != nil {
		return auth.Key{}, nil, fmt.Errorf("--server: %w", err)
	}
	for _, u := range endpoints {
		switch {
		case u.Scheme == "https":
			if o.caCertHash == "" {
				return auth.Key{}, nil, fmt.Errorf("--ca-cert-hash is required to join over https: the sha256:HEX that `vessel host token create` printed")
			}
		case !isLoopbackHost(u.Hostname()):
			return auth.Key{}, nil, fmt.Errorf("--server %s is plain HTTP on a non-loopback address: a join token is sent over https only", u)
		}
	}
	hostID := o.host.hostID
	if hostID == "" {
		if hostID, err = stableHostID(g.dataDir); err != nil {
			return auth.Key{}, nil, err
		}
	}
	// Any replica takes the join: the next is tried while one does not
	// answer. Every replica's certificate chains to the same CA.
	var caPEM []byte
	var resp agentproto.JoinResponse
	for _, u := range endpoints {
		caPEM = nil
		if u.Scheme == "https" {
			if caPEM, err = agentproto.DiscoverCA(ctx, u.String(), o.caCertHash); err != nil {
				if errdefs.IsUnavailable(err) {
					continue
				}
				return auth.Key{}, nil, err
			}
		}
		if resp, err = agentproto.Join(ctx, u.String(), caPEM, o.token, hostID); err == nil || !errdefs.IsUnavailable(err) {
			break
		}
	}
	if err != nil {
		return auth.Key{}, nil, err
	}
	if resp.CABundle != "" {
		caPEM = []byte(resp.CABundle)
	}
	if caPEM != nil {
		if err := fsutil.WriteFileAtomic(caPath, caPEM, ""); err != nil {
			return auth.Key{}, nil, err
		}
	}
	data, _ := json.MarshalIndent(agentCredentials{Server: o.server, HostID: resp.HostID, AccessKeyID: resp.AccessKeyID, SecretAccessKey: resp.SecretAccessKey}, "", "  ")
	if err := fsutil.WriteFileAtomic(credPath, data, ""); err != nil {
		return auth.Key{}, nil, err
	}
	o.host.hostID = resp.HostID
	fmt.Fprintf(cmd.ErrOrStderr(), "Joined the control plane as host %s; its credential is kept in %s\n", resp.HostID, credPath)
	return auth.Key{AccessKeyID: resp.AccessKeyID, SecretAccessKey: resp.SecretAccessKey, Policy: auth.PolicyHost, HostID: resp.HostID}, caPEM, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// listenEndpoint opens --listen and returns the URL the control plane
// reaches it at: --advertise, or the listener's address, with the address
// this host reaches --server from when it listens on all of them.
func (o *agentOptions) listenEndpoint() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, "", fmt.Errorf("listening on %s (--listen): %w", o.listen, err)
	}
	if o.advertise != "" {
		return ln, strings.TrimSuffix(o.advertise, "/"), nil
	}
	addr := ln.Addr().(*net.TCPAddr)
	ip := addr.IP.String()
	if addr.IP.IsUnspecified() {
		ip = "127.0.0.1"
		if a, ok := localAddressTo(controlPlaneHostPort(o.server)); ok {
			ip = a.String()
		}
	}
	return ln, "https://" + net.JoinHostPort(ip, strconv.Itoa(addr.Port)), nil
}

// controlPlaneHostPort is the host:port of the first of --server's URLs.
func controlPlaneHostPort(server string) string {
	us, err := agentproto.ParseEndpoints(server)
	if err != nil {
		return ""
	}
	u := us[0]
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}

// writeAgentAuthError answers a request to the agent's endpoint whose
// signature is refused, as agent protocol errors are shaped.
func writeAgentAuthError(w http.ResponseWriter, _ *http.Request, e *auth.AuthError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.HTTPStatus)
	json.NewEncoder(w).Encode(map[string]string{"kind": e.Code, "message": e.Message})
}
