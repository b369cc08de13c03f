package tlsutil

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestCertsAreIssuedRenewedAndSignedByTheCA(t *testing.T) {
	dir := t.TempDir()
	loadCerts := func(dir string, hosts []string) (*Serving, error) {
		ca, err := LoadOrCreateCA(dir, "test-ca")
		if err != nil {
			return nil, err
		}
		return LoadServing(ServingConfig{CA: ca, Dir: dir, Hosts: hosts})
	}
	c, err := loadCerts(dir, []string{"127.0.0.1", "bridge.example"})
	if err != nil {
		t.Fatal(err)
	}
	ca := c.CABundle()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("the CA bundle holds no certificate")
	}
	first := c.Leaf()
	for _, host := range []string{"127.0.0.1", "bridge.example"} {
		if _, err := first.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("the serving certificate does not verify for %s: %v", host, err)
		}
	}

	// Loading again keeps a certificate that is far from expiry.
	again, err := loadCerts(dir, []string{"127.0.0.1", "bridge.example"})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Leaf().Equal(first) {
		t.Error("a valid certificate was replaced on load")
	}

	// Within RenewBefore of expiry it is renewed, by the same CA.
	later := first.NotAfter.Add(-RenewBefore + time.Hour)
	if err := c.Ensure(later); err != nil {
		t.Fatal(err)
	}
	if c.Leaf().Equal(first) {
		t.Fatal("a certificate close to expiry was not renewed")
	}
	if _, err := c.Leaf().Verify(x509.VerifyOptions{Roots: pool, DNSName: "bridge.example", CurrentTime: later}); err != nil {
		t.Errorf("the renewed certificate does not verify against the same CA: %v", err)
	}
	served, _ := c.GetCertificate(nil)
	if leaf, _ := x509.ParseCertificate(served.Certificate[0]); !leaf.Equal(c.Leaf()) {
		t.Error("the server still serves the old certificate")
	}

	// A new address makes a new certificate.
	moved, err := loadCerts(dir, []string{"10.0.0.9"})
	if err != nil {
		t.Fatal(err)
	}
	if moved.Leaf().VerifyHostname("10.0.0.9") != nil {
		t.Error("the certificate does not name the new address")
	}
	for _, f := range []string{CAKeyFile, ServingKey} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; keys must be 0600", f, err, st.Mode().Perm())
		}
	}
}

func TestConcurrentStartsShareOneCA(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	bundles := make([][]byte, 8)
	for i := range bundles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca, err := LoadOrCreateCA(dir, "test-ca")
			if err != nil {
				t.Error(err)
				return
			}
			bundles[i] = ca.PEM
		}()
	}
	wg.Wait()
	for _, b := range bundles[1:] {
		if !SameBundle(b, bundles[0]) {
			t.Fatal("concurrent starts made different CAs")
		}
	}
}
