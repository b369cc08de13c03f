package bridge

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"vessel.dev/vessel/internal/fsutil"
)

// Certificate files in CertDir. tls.crt/tls.key are the names
// controller-runtime's webhook server watches.
const (
	CAFile       = "ca.crt"
	CAKeyFile    = "ca.key"
	ServingCert  = "tls.crt"
	ServingKey   = "tls.key"
	caValidity   = 10 * 365 * 24 * time.Hour
	certValidity = 90 * 24 * time.Hour
	// A serving certificate is renewed once less than this is left.
	renewBefore = 30 * 24 * time.Hour
)

// certs keeps the bridge's CA and the serving certificate of its webhook
// and kubelet API, renewing the latter before it expires. client-go's
// util/cert makes the CA; issuing a leaf from it is not in any library the
// project uses, so issue is written here with crypto/x509.
type certs struct {
	dir   string
	hosts []string // IPs and DNS names of the serving certificate

	mu      sync.RWMutex
	serving *tls.Certificate
	leaf    *x509.Certificate
}

// loadCerts makes sure CertDir holds a CA and a valid serving certificate
// for hosts, creating or renewing what is missing or due.
func loadCerts(dir string, hosts []string) (*certs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &certs{dir: dir, hosts: hosts}
	if err := c.ensure(time.Now()); err != nil {
		return nil, err
	}
	return c, nil
}

// EnsureCA returns the PEM CA certificate in dir, creating the CA when
// missing: what `vessel k8s install` puts in the webhooks' caBundle.
func EnsureCA(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caPEM, _, _, err := loadOrCreateCA(dir)
	return caPEM, err
}

func loadOrCreateCA(dir string) ([]byte, *x509.Certificate, *ecdsa.PrivateKey, error) {
	// `vessel k8s install` and the bridge may both get here first: the
	// lock makes one of them create the CA and the other read it.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, nil, nil, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	caPEM, errC := os.ReadFile(certPath)
	keyPEM, errK := os.ReadFile(keyPath)
	if errC == nil && errK == nil {
		cs, err := cert.ParseCertsPEM(caPEM)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading %s: %w", certPath, err)
		}
		k, err := keyutil.ParsePrivateKeyPEM(keyPEM)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading %s: %w", keyPath, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, nil, fmt.Errorf("%s is not an ECDSA key", keyPath)
		}
		return caPEM, cs[0], ek, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := cert.NewSelfSignedCACert(cert.Config{CommonName: "vessel-bridge-ca", Organization: []string{"vessel"},
		NotBefore: time.Now().Add(-time.Hour)}, key)
	if err != nil {
		return nil, nil, nil, err
	}
	_ = caValidity // NewSelfSignedCACert issues ten-year CAs
	caPEM = pem.EncodeToMemory(&pem.Block{Type: cert.CertificateBlockType, Bytes: ca.Raw})
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := fsutil.WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: keyutil.ECPrivateKeyBlockType, Bytes: der}), ""); err != nil {
		return nil, nil, nil, err
	}
	if err := fsutil.WriteFileAtomic(certPath, caPEM, ""); err != nil {
		return nil, nil, nil, err
	}
	return caPEM, ca, key, nil
}

// ensure loads the serving certificate and issues a new one when it is
// missing, does not cover hosts, or expires within renewBefore.
func (c *certs) ensure(now time.Time) error {
	_, ca, caKey, err := loadOrCreateCA(c.dir)
	if err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(c.dir, ServingCert), filepath.Join(c.dir, ServingKey)
	if kp, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf, err := x509.ParseCertificate(kp.Certificate[0])
		if err == nil && leaf.NotAfter.Sub(now) > renewBefore && c.covers(leaf) && leaf.CheckSignatureFrom(ca) == nil {
			c.set(&kp, leaf)
			return nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "vessel-bridge", Organization: []string{"vessel"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range c.hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: cert.CertificateBlockType, Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: keyutil.ECPrivateKeyBlockType, Bytes: keyDER})
	// The key first: a watcher that sees the new certificate must find
	// its key.
	if err := fsutil.WriteFileAtomic(keyPath, keyPEM, ""); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(certPath, certPEM, ""); err != nil {
		return err
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	leaf, _ := x509.ParseCertificate(der)
	c.set(&kp, leaf)
	return nil
}

func (c *certs) covers(leaf *x509.Certificate) bool {
	for _, h := range c.hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func (c *certs) set(kp *tls.Certificate, leaf *x509.Certificate) {
	c.mu.Lock()
	c.serving, c.leaf = kp, leaf
	c.mu.Unlock()
}

// getCertificate serves the current certificate (tls.Config.GetCertificate).
func (c *certs) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.serving, nil
}

// caBundle returns the PEM CA certificate.
func (c *certs) caBundle() ([]byte, error) {
	return os.ReadFile(filepath.Join(c.dir, CAFile))
}

// sameBundle reports whether two PEM bundles hold the same bytes.
func sameBundle(a, b []byte) bool { return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b)) }
