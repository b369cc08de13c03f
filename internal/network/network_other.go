//go:build !linux

package network

import (
	"context"
	"net"

	"github.com/vishvananda/netlink"

	"vessel.dev/vessel/internal/errdefs"
)

// Task networking needs Linux; elsewhere the package builds, Open and the
// lease bookkeeping work, and Attach fails with ErrUnavailable.

func errNotLinux() error {
	return errdefs.Unavailable("network: task networking needs Linux (bridges, veths, network namespaces)")
}

func linkExists(string) bool                { return false }
func enableIPv4Forwarding() error           { return errNotLinux() }
func (m *Manager) removeOrphanVeths() error { return nil }

func (m *Manager) ensureSubnet(*subnetState) (netlink.Link, error) { return nil, errNotLinux() }
func (m *Manager) plumb(*lease, *subnetState, netlink.Link) error  { return errNotLinux() }
func (m *Manager) teardown(taskID, veth string) error              { return nil }
func (m *Manager) verify(*lease) []string                          { return []string{"task networking needs Linux"} }

// RemoveUnusedBridges does nothing off Linux.
func (m *Manager) RemoveUnusedBridges(ctx context.Context) error { return nil }

func (m *Manager) syncFirewall() error   { return nil }
func (m *Manager) removeFirewall() error { return nil }

// DialInNamespace needs Linux.
func DialInNamespace(ctx context.Context, nsPath, network, address string) (net.Conn, error) {
	return nil, errNotLinux()
}
func (m *Manager) fixMAC(*lease) error { return nil }
