package tlsutil

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"vessel.dev/vessel/internal/fsutil"
)

// File names in a certificate directory. tls.crt/tls.key are the names
// controller-runtime's webhook server watches.
const (
	CAFile      = "ca.crt"
	CAKeyFile   = "ca.key"
	ServingCert = "tls.crt"
	ServingKey  = "tls.key"
	// CertValidity is how long an issued certificate is valid.
	CertValidity = 90 * 24 * time.Hour
	// RenewBefore: a serving certificate is renewed once less than this
	// is left.
	RenewBefore = 30 * 24 * time.Hour
)

// CA is a certificate authority kept in a directory: ca.crt and ca.key
// (mode 0600). client-go's util/cert makes it; issuing a leaf is not in any
// library the project uses, so Issue is written here with crypto/x509.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is Cert in PEM form, what clients put in their trust bundle.
	PEM []byte
}

// LoadOrCreateCA returns the CA in dir, creating dir (0700) and a new
// ten-year CA named commonName when there is none. Concurrent callers (two
// processes starting at once) share one CA: a lock file in dir makes one of
// them create it and the others read it.
func LoadOrCreateCA(dir, commonName string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	caPEM, errC := os.ReadFile(certPath)
	keyPEM, errK := os.ReadFile(keyPath)
	if errC == nil && errK == nil {
		c, err := ParseCertPEM(caPEM)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", certPath, err)
		}
		k, err := keyutil.ParsePrivateKeyPEM(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", keyPath, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s is not an ECDSA key", keyPath)
		}
		return &CA{Cert: c, Key: ek, PEM: caPEM}, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	c, err := cert.NewSelfSignedCACert(cert.Config{CommonName: commonName, Organization: []string{"vessel"},
		NotBefore: time.Now().Add(-time.Hour)}, key)
	if err != nil {
		return nil, err
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: cert.CertificateBlockType, Bytes: c.Raw})
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: keyutil.ECPrivateKeyBlockType, Bytes: der}), ""); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(certPath, caPEM, ""); err != nil {
		return nil, err
	}
	return &CA{Cert: c, Key: key, PEM: caPEM}, nil
}

// Issue returns a new certificate and key (PEM) signed by ca for
// commonName, valid from an hour before now for CertValidity, naming hosts
// (IP addresses or DNS names) and usable for usages.
func (ca *CA) Issue(commonName string, hosts []string, usages []x509.ExtKeyUsage, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"vessel"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: cert.CertificateBlockType, Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: keyutil.ECPrivateKeyBlockType, Bytes: keyDER}), nil
}

// ParseCertPEM returns the first certificate in a PEM bundle.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	cs, err := cert.ParseCertsPEM(b)
	if err != nil {
		return nil, err
	}
	return cs[0], nil
}

// SPKIHash is "sha256:" and the hex SHA-256 of c's SubjectPublicKeyInfo:
// the form of kubeadm's --discovery-token-ca-cert-hash, which join tokens
// pin the control plane's CA with.
func SPKIHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Fingerprint is the SHA-256 of c's DER form, in colon-separated upper-case
// hex as openssl prints it.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// ClientConfig returns a client tls.Config that trusts only the CA
// certificates in caPEM.
func ClientConfig(caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the CA bundle holds no PEM certificate")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// ServingConfig says which serving certificate LoadServing keeps.
type ServingConfig struct {
	// CA issues the certificate. Required.
	CA *CA
	// Dir holds tls.crt and tls.key (0600). Required.
	Dir string
	// Hosts are the IP addresses and DNS names the certificate names.
	Hosts []string
	// CommonName of the certificate; "vessel" by default.
	CommonName string
}

// Serving keeps a serving certificate issued by a CA, renewing it before
// it expires. It is safe for concurrent use.
type Serving struct {
	cfg ServingConfig

	mu   sync.RWMutex
	pair *tls.Certificate
	leaf *x509.Certificate
}

// LoadServing makes sure cfg.Dir holds a valid serving certificate for
// cfg.Hosts signed by cfg.CA, issuing one when it is missing, due or for
// other hosts.
func LoadServing(cfg ServingConfig) (*Serving, error) {
	if cfg.CA == nil || cfg.Dir == "" {
		return nil, errors.New("tlsutil: a serving certificate needs a CA and a directory")
	}
	if cfg.CommonName == "" {
		cfg.CommonName = "vessel"
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	s := &Serving{cfg: cfg}
	if err := s.Ensure(time.Now()); err != nil {
		return nil, err
	}
	return s, nil
}

// Ensure loads the serving certificate and issues a new one when it is
// missing, does not cover the hosts, was not issued by the CA, or expires
// within RenewBefore of now.
func (s *Serving) Ensure(now time.Time) error {
	certPath, keyPath := filepath.Join(s.cfg.Dir, ServingCert), filepath.Join(s.cfg.Dir, ServingKey)
	if kp, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf, err := x509.ParseCertificate(kp.Certificate[0])
		if err == nil && leaf.NotAfter.Sub(now) > RenewBefore && s.covers(leaf) && leaf.CheckSignatureFrom(s.cfg.CA.Cert) == nil {
			s.set(&kp, leaf)
			return nil
		}
	}
	certPEM, keyPEM, err := s.cfg.CA.Issue(s.cfg.CommonName, s.cfg.Hosts, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, now)
	if err != nil {
		return err
	}
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
	leaf, _ := x509.ParseCertificate(kp.Certificate[0])
	s.set(&kp, leaf)
	return nil
}

func (s *Serving) covers(leaf *x509.Certificate) bool {
	for _, h := range s.cfg.Hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func (s *Serving) set(kp *tls.Certificate, leaf *x509.Certificate) {
	s.mu.Lock()
	s.pair, s.leaf = kp, leaf
	s.mu.Unlock()
}

// Leaf returns the certificate served now.
func (s *Serving) Leaf() *x509.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leaf
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (s *Serving) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pair, nil
}

// CABundle returns the PEM certificate of the issuing CA.
func (s *Serving) CABundle() []byte { return s.cfg.CA.PEM }

// SameBundle reports whether two PEM bundles hold the same bytes.
func SameBundle(a, b []byte) bool { return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b)) }

// CertSHA256 is the hex SHA-256 of a DER certificate: what PinnedConfig
// pins.
func CertSHA256(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// PinnedConfig returns a client tls.Config that accepts exactly the server
// certificate whose CertSHA256 is pin, whatever its names and issuer: for
// an agent's endpoint, whose self-signed certificate's hash the agent
// reported when it registered with its own credential.
func PinnedConfig(pin string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || CertSHA256(raw[0]) != strings.ToLower(pin) {
				return fmt.Errorf("the server's certificate is not the one pinned (sha256 %s)", pin)
			}
			return nil
		},
	}
}

// LoadOrCreateSelfSigned returns the self-signed certificate in
// dir/tls.crt and dir/tls.key (0600), making it for host when missing.
func LoadOrCreateSelfSigned(dir, host string) (tls.Certificate, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	certPath, keyPath := filepath.Join(dir, ServingCert), filepath.Join(dir, ServingKey)
	if kp, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return kp, nil
	}
	certPEM, keyPEM, err := cert.GenerateSelfSignedCertKey(host, nil, nil)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := fsutil.WriteFileAtomic(keyPath, keyPEM, ""); err != nil {
		return tls.Certificate{}, err
	}
	if err := fsutil.WriteFileAtomic(certPath, certPEM, ""); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
