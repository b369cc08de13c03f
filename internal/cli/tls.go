package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/tlsutil"
)

// TLSDir is the directory, inside the data directory, of the control
// plane's own CA and serving certificate.
const TLSDir = "tls"

// caBundlePath is the control plane's CA certificate in dataDir: what
// AWS_CA_BUNDLE points at.
func caBundlePath(dataDir string) string { return filepath.Join(dataDir, TLSDir, tlsutil.CAFile) }

// serverTLSOptions are the TLS flags of `vessel server`.
type serverTLSOptions struct {
	cert, key string
	sans      []string
}

func (o *serverTLSOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.cert, "tls-cert", "", "PEM certificate (chain) the API serves; with --tls-key. Without them, a server listening on anything but loopback makes its own CA and certificate in <data-dir>/tls")
	f.StringVar(&o.key, "tls-key", "", "PEM private key of --tls-cert")
	f.StringSliceVar(&o.sans, "tls-san", nil, "extra IP addresses or DNS names the generated server certificate names")
}

// serverTLS is how the API listener speaks.
type serverTLS struct {
	config *tls.Config // nil: plain HTTP (loopback only)
	// caPEM is the CA clients trust; caHash its SubjectPublicKeyInfo hash
	// (what join tokens pin) and caFingerprint its SHA-256.
	caPEM                 []byte
	caHash, caFingerprint string
	// generated is true when the CA is the server's own (<data>/tls).
	generated bool
}

// setUp decides whether ln speaks TLS: always with --tls-cert; with a CA
// and certificate of the server's own when ln is not on loopback; plain
// HTTP otherwise.
func (o *serverTLSOptions) setUp(dataDir string, ln net.Listener) (*serverTLS, error) {
	if (o.cert == "") != (o.key == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: give both, or neither to let the server make its own")
	}
	if o.cert != "" {
		kp, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("loading --tls-cert %s and --tls-key %s: %w", o.cert, o.key, err)
		}
		// The chain's last certificate is the one clients pin.
		root, err := x509.ParseCertificate(kp.Certificate[len(kp.Certificate)-1])
		if err != nil {
			return nil, fmt.Errorf("--tls-cert %s: %w", o.cert, err)
		}
		pemData, err := os.ReadFile(o.cert)
		if err != nil {
			return nil, err
		}
		return &serverTLS{config: &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12},
			caPEM: pemData, caHash: tlsutil.SPKIHash(root), caFingerprint: tlsutil.Fingerprint(root)}, nil
	}
	addr := ln.Addr().(*net.TCPAddr)
	if addr.IP.IsLoopback() {
		return &serverTLS{}, nil
	}
	dir := filepath.Join(dataDir, TLSDir)
	ca, err := tlsutil.LoadOrCreateCA(dir, "vessel-ca")
	if err != nil {
		return nil, fmt.Errorf("the control plane's CA in %s: %w", dir, err)
	}
	serving, err := tlsutil.LoadServing(tlsutil.ServingConfig{CA: ca, Dir: dir, Hosts: serverSANs(addr.IP, o.sans), CommonName: "vessel-server"})
	if err != nil {
		return nil, fmt.Errorf("the server certificate in %s: %w", dir, err)
	}
	return &serverTLS{config: &tls.Config{GetCertificate: serving.GetCertificate, MinVersion: tls.VersionTLS12},
		caPEM: ca.PEM, caHash: tlsutil.SPKIHash(ca.Cert), caFingerprint: tlsutil.Fingerprint(ca.Cert), generated: true}, nil
}

// serverSANs are the names of the server's certificate: the listening
// address (every address of the machine when it listens on all of them),
// the host name, localhost, and extras.
func serverSANs(ip net.IP, extra []string) []string {
	out := []string{"localhost", "127.0.0.1", "::1"}
	if ip.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
					out = append(out, n.IP.String())
				}
			}
		}
	} else {
		out = append(out, ip.String())
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		out = append(out, h)
	}
	out = append(out, extra...)
	slices.Sort(out)
	return slices.Compact(out)
}

// endpointURL is the URL clients reach ln at: its address, or for a
// listener on every address the machine's first non-loopback one.
func endpointURL(ln net.Listener, tlsOn bool) string {
	addr := ln.Addr().(*net.TCPAddr)
	ip := addr.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() && n.IP.To4() != nil {
					ip = n.IP
					break
				}
			}
		}
	}
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))
}

// tlsConfig returns the client TLS configuration of the CLI: the system's
// roots plus the CA of AWS_CA_BUNDLE, or else of the data directory's
// tls/ca.crt when it exists.
func (g *globals) tlsConfig() (*tls.Config, error) {
	path := os.Getenv("AWS_CA_BUNDLE")
	if path == "" {
		path = caBundlePath(g.dataDir)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// httpClient is an HTTP client trusting tlsConfig's roots.
func (g *globals) httpClient() (*http.Client, error) {
	tc, err := g.tlsConfig()
	if err != nil || tc == nil {
		return http.DefaultClient, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr}, nil
}

// printCABundle adds `export AWS_CA_BUNDLE=...` to `vessel credentials`
// when the control plane made its own CA: the aws CLI and the SDKs trust
// what that variable names.
func printCABundle(cmd *cobra.Command, g *globals) error {
	path := caBundlePath(g.dataDir)
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "export AWS_CA_BUNDLE=%s\n", abs)
	return err
}
