package agentproto

import (
	"context"
	"net/netip"
)

// Data plane back ends of the fleet network: how a task's packet for a
// task on another host gets there.
const (
	// BackendVXLAN encapsulates task traffic in UDP between hosts (works
	// wherever hosts reach each other over IP). The default.
	BackendVXLAN = "vxlan"
	// BackendHostGW routes each host's slices through that host's address
	// (hosts on one L2 segment; no encapsulation).
	BackendHostGW = "host-gw"
)

// FleetSubnet is a subnet as the control plane defines it for the whole
// fleet: its gateway (the first usable address) is the same on every host,
// and each host serving it gets a slice of it for its tasks.
type FleetSubnet struct {
	Name string       `json:"name"`
	CIDR netip.Prefix `json:"cidr"`
	// SliceBits is the prefix length of a host's slice (default 24).
	SliceBits int  `json:"sliceBits"`
	NAT       bool `json:"nat,omitempty"`
	// Peers names the subnets whose tasks may reach this one's.
	Peers []string `json:"peers,omitempty"`
}

// Slice is one host's share of a subnet: its tasks' addresses come from it.
type Slice struct {
	Subnet string       `json:"subnet"`
	CIDR   netip.Prefix `json:"cidr"`
}

// Peer is another host of the fleet, as the data plane needs it.
type Peer struct {
	HostID string `json:"hostId"`
	// Address is where the host is reached (its underlay address).
	Address netip.Addr `json:"address"`
	Slices  []Slice    `json:"slices"`
}

// HostNetwork is what a host needs to be part of the fleet network.
type HostNetwork struct {
	// Backend is BackendVXLAN or BackendHostGW, set per fleet.
	Backend string `json:"backend"`
	// VNI and Port are the VXLAN network identifier and UDP port.
	VNI  int `json:"vni,omitempty"`
	Port int `json:"port,omitempty"`
	// Address is this host's own underlay address, as its peers know it
	// (their Peer.Address for it): the VXLAN back end sends from it and
	// derives its tunnel endpoint's MAC from it. Zero: the host uses the
	// source address its routes give toward its peers.
	Address netip.Addr `json:"address,omitempty"`
	// Subnets are the fleet's subnets this host serves.
	Subnets []FleetSubnet `json:"subnets"`
	// Slices are this host's slices, one per subnet it serves.
	Slices []Slice `json:"slices"`
	// Peers are the other hosts with their slices.
	Peers []Peer `json:"peers"`
	// Revision identifies this answer; pass it back to wait for the next.
	Revision int64 `json:"revision"`
}

// NetworkSource is what a host agent asks of the control plane for the
// fleet network.
type NetworkSource interface {
	// HostNetwork returns the host's view of the fleet network. When after
	// equals the current revision it blocks until something in it changes
	// or ctx is done (then it returns the unchanged view and no error).
	HostNetwork(ctx context.Context, hostID string, after int64) (HostNetwork, error)
}
