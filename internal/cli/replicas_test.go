package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/tlsutil"
)

// addrListener is a listener that only says where it listens: setUp reads
// no more of it, and no port is opened on the machine's network.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

func listenerAt(ip string) net.Listener {
	return addrListener{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 8600}}
}

// TestReplicasShareTheCA: a replica whose data directory was given the
// first replica's CA (tls/ca.crt and tls/ca.key, as the README says)
// serves a certificate of its own address signed by that CA, so one CA
// hash and one CA bundle hold for every replica; without the copy it
// makes a CA of its own, which agents joined to the first would refuse.
func TestReplicasShareTheCA(t *testing.T) {
	var o serverTLSOptions
	first := t.TempDir()
	t1, err := o.setUp(first, listenerAt("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	second := t.TempDir()
	if err := os.MkdirAll(filepath.Join(second, TLSDir), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{tlsutil.CAFile, tlsutil.CAKeyFile} {
		data, err := os.ReadFile(filepath.Join(first, TLSDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(second, TLSDir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t2, err := o.setUp(second, listenerAt("198.18.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	if t2.caHash != t1.caHash {
		t.Fatalf("the second replica's CA hash %s differs from the first's %s", t2.caHash, t1.caHash)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(t1.caPEM)
	kp, err := t2.config.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "198.18.0.2"}); err != nil {
		t.Fatalf("the second replica's certificate, checked against the first's CA: %v", err)
	}

	t3, err := o.setUp(t.TempDir(), listenerAt("198.18.0.3"))
	if err != nil {
		t.Fatal(err)
	}
	if t3.caHash == t1.caHash {
		t.Fatal("a replica without the copied CA has the first's CA hash")
	}
}

// TestAgentServerList: --server takes one URL per replica; anything else
// is refused before the agent starts, saying what is accepted.
func TestAgentServerList(t *testing.T) {
	for _, bad := range []string{"http://10.0.0.1:8600,ftp://10.0.0.2", "10.0.0.1:8600", " , "} {
		root := NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"agent", "--server", bad, "--data-dir", t.TempDir()})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "separated by commas") {
			t.Errorf("agent --server %q: %v; want a refusal saying one URL per replica, separated by commas", bad, err)
		}
	}
}
