package microvm

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/guestproto"
)

// Names of the links the runtime adds to a sandbox's network namespace.
const (
	bridgeLink = "br0"
	tapLink    = "tap0"
)

// netState is what the runtime took from eth0 of the sandbox's namespace,
// kept in the record to give it back on Delete.
type netState struct {
	NetNSPath string `json:"netnsPath"`
	Address   string `json:"address"` // CIDR
	Gateway   string `json:"gateway,omitempty"`
	MAC       string `json:"mac"` // eth0's, now the guest's
}

func inNetNS(path string, fn func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer h.Close()
	return fn(h)
}

// takeEth0 moves the task's address from eth0 of the namespace to the
// guest: it reads eth0's IPv4 address, default gateway and MAC, flushes
// them, gives eth0 a new random MAC, and makes br0 with eth0 as a port.
// QEMU's tap0 joins br0 once QEMU runs (attachTap). The guest's NIC gets
// eth0's old MAC, so that neighbours' ARP entries stay right.
func takeEth0(path string) (*netState, error) {
	st := &netState{NetNSPath: path}
	err := inNetNS(path, func(h *netlink.Handle) error {
		eth, err := h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("eth0: %w", err)
		}
		addrs, err := h.AddrList(eth, netlink.FAMILY_V4)
		if err != nil || len(addrs) == 0 {
			return fmt.Errorf("eth0 has no IPv4 address (%v)", err)
		}
		st.Address = addrs[0].IPNet.String()
		routes, _ := h.RouteList(eth, netlink.FAMILY_V4)
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
				st.Gateway = r.Gw.String()
			}
		}
		st.MAC = eth.Attrs().HardwareAddr.String()
		for _, a := range addrs {
			if err := h.AddrDel(eth, &a); err != nil {
				return fmt.Errorf("flush eth0: %w", err)
			}
		}
		if err := h.LinkSetDown(eth); err != nil {
			return err
		}
		if err := h.LinkSetHardwareAddr(eth, randomMAC()); err != nil {
			return fmt.Errorf("eth0 MAC: %w", err)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeLink}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add %s: %w", bridgeLink, err)
		}
		if err := h.LinkSetMaster(eth, br); err != nil {
			return fmt.Errorf("eth0 into %s: %w", bridgeLink, err)
		}
		for _, l := range []netlink.Link{br, eth} {
			if err := h.LinkSetUp(l); err != nil {
				return err
			}
		}
		return nil
	})
	return st, err
}

// attachTap puts QEMU's tap0 on br0.
func attachTap(path string) error {
	return inNetNS(path, func(h *netlink.Handle) error {
		tap, err := h.LinkByName(tapLink)
		if err != nil {
			return fmt.Errorf("%s: %w", tapLink, err)
		}
		br, err := h.LinkByName(bridgeLink)
		if err != nil {
			return err
		}
		if err := h.LinkSetMaster(tap, br); err != nil {
			return fmt.Errorf("%s into %s: %w", tapLink, bridgeLink, err)
		}
		return h.LinkSetUp(tap)
	})
}

// giveBackEth0 removes br0 and tap0 and restores eth0's MAC, address and
// default route. A namespace that is gone is not an error.
func giveBackEth0(st *netState) error {
	if st == nil {
		return nil
	}
	err := inNetNS(st.NetNSPath, func(h *netlink.Handle) error {
		var errs []error
		for _, name := range []string{tapLink, bridgeLink} {
			if l, err := h.LinkByName(name); err == nil {
				// tap0 goes by itself once QEMU's descriptor of it is
				// closed, which may happen after QEMU is seen gone and
				// after the lookup: gone by then is what was wanted.
				if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
					errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
				}
			}
		}
		eth, err := h.LinkByName("eth0")
		if err != nil {
			return errors.Join(errs...)
		}
		if mac, err := net.ParseMAC(st.MAC); err == nil {
			h.LinkSetDown(eth)
			h.LinkSetHardwareAddr(eth, mac)
		}
		if a, err := netlink.ParseAddr(st.Address); err == nil {
			h.AddrReplace(eth, a)
		}
		h.LinkSetUp(eth)
		if st.Gateway != "" {
			h.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP(st.Gateway), Flags: int(netlink.FLAG_ONLINK)})
		}
		return errors.Join(errs...)
	})
	if err != nil && errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// netLeftovers lists br0 and tap0 still in the namespace.
func netLeftovers(path string) []string {
	var out []string
	inNetNS(path, func(h *netlink.Handle) error {
		for _, name := range []string{tapLink, bridgeLink} {
			if _, err := h.LinkByName(name); err == nil {
				out = append(out, "link "+name+" in "+path)
			}
		}
		return nil
	})
	return out
}

func randomMAC() net.HardwareAddr {
	b := make([]byte, 6)
	rand.Read(b)
	b[0] = (b[0] | 2) &^ 1 // locally administered, unicast
	return b
}

func guestNet(st *netState) *guestproto.NetConfig {
	if st == nil {
		return nil
	}
	return &guestproto.NetConfig{Address: st.Address, Gateway: st.Gateway}
}
