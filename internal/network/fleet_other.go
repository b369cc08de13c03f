//go:build !linux

package network

import "context"

// SetFleet needs Linux (netlink routes, VXLAN).
func (m *Manager) SetFleet(ctx context.Context, f Fleet) error {
	if _, err := checkFleet(f); err != nil {
		return err
	}
	return errNotLinux()
}

// LeaveFleet does nothing off Linux.
func (m *Manager) LeaveFleet(ctx context.Context) error { return nil }

func deleteLink(string) error { return nil }
