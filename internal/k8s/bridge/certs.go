package bridge

import (
	"time"

	"vessel.dev/vessel/internal/tlsutil"
)

// Certificate files in CertDir (see internal/tlsutil).
const (
	CAFile      = tlsutil.CAFile
	CAKeyFile   = tlsutil.CAKeyFile
	ServingCert = tlsutil.ServingCert
	ServingKey  = tlsutil.ServingKey
)

// certs keeps the bridge's CA and the serving certificate of its webhook
// and kubelet API, renewing the latter before it expires.
type certs struct{ *tlsutil.Serving }

// loadCerts makes sure CertDir holds a CA and a valid serving certificate
// for hosts, creating or renewing what is missing or due.
func loadCerts(dir string, hosts []string) (*certs, error) {
	ca, err := tlsutil.LoadOrCreateCA(dir, "vessel-bridge-ca")
	if err != nil {
		return nil, err
	}
	s, err := tlsutil.LoadServing(tlsutil.ServingConfig{CA: ca, Dir: dir, Hosts: hosts, CommonName: "vessel-bridge"})
	if err != nil {
		return nil, err
	}
	return &certs{s}, nil
}

// EnsureCA returns the PEM CA certificate in dir, creating the CA when
// missing: what `vessel k8s install` puts in the webhooks' caBundle.
func EnsureCA(dir string) ([]byte, error) {
	ca, err := tlsutil.LoadOrCreateCA(dir, "vessel-bridge-ca")
	if err != nil {
		return nil, err
	}
	return ca.PEM, nil
}

func (c *certs) ensure(now time.Time) error { return c.Ensure(now) }

// sameBundle reports whether two PEM bundles hold the same bytes.
func sameBundle(a, b []byte) bool { return tlsutil.SameBundle(a, b) }
