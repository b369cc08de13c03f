package fleet

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// TestGatewayStaysReachableAsMachinesJoin: a machine that has talked to
// the test process (on the fleet bridge's address) still reaches it after
// another machine joins whose link has a lower MAC than every other port's.
// A Linux bridge whose own MAC was never set takes its ports' lowest, so
// the bridge's MAC changed under the first machines: they kept sending to
// the old one, which the bridge passes up as meant for another host and
// IP drops, until something made them ARP again, tens of seconds later.
// That was TestKubernetesFleet's flake: the first agent host could not
// pull from the registry on the gateway ("i/o timeout") and its
// kube-proxy lost the API server, while the other hosts could.
func TestGatewayStaysReachableAsMachinesJoin(t *testing.T) {
	f := New(t, Config{Vessel: "/bin/true"}) // runs no vessel
	ln, err := net.Listen("tcp", net.JoinHostPort(f.Gateway().String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "gateway") })}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/"
	get := func(m *Machine) error {
		out, err := m.Command("curl", "-sS", "-m", "3", url).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "gateway" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	bridgeMAC := func() string {
		out, err := exec.Command("cat", "/sys/class/net/"+f.bridge+"/address").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}

	// Machines a and b, b's link with a low MAC: the bridge's MAC, which
	// a learns.
	a, b := f.Machine("a"), f.Machine("b")
	f.ip("link", "set", b.veth, "address", "02:00:00:00:00:02")
	if err := get(a); err != nil {
		t.Fatalf("machine a reaching the gateway: %v", err)
	}
	mac := bridgeMAC()
	// Machine c's link has the lowest MAC a port can have.
	c := f.Machine("c")
	f.ip("link", "set", c.veth, "address", "02:00:00:00:00:01")
	if got := bridgeMAC(); got != mac {
		t.Errorf("the fleet bridge's MAC went from %s to %s when machine c joined", mac, got)
	}
	if err := get(a); err != nil {
		t.Errorf("machine a reaching the gateway after machine c joined: %v (a sends to the MAC it learnt, %s)", err, mac)
	}
	for _, m := range []*Machine{b, c} {
		if err := get(m); err != nil {
			t.Errorf("machine %s reaching the gateway: %v", m.Name, err)
		}
	}
}
