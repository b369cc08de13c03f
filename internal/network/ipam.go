package network

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/fsutil"
)

// lease is one task's address, as persisted in leases.json.
type lease struct {
	TaskID string `json:"taskId"`
	// Name is what the attachment's namespace and /etc directory are
	// called (<StateDir>/netns/<Name>, <StateDir>/etc/<Name>) when it is
	// not TaskID: an attachment re-keyed to another task (Rekey) keeps
	// the names it was made under, because a sandbox holds its namespace
	// by path for its whole life.
	Name     string       `json:"name,omitempty"`
	Subnet   string       `json:"subnet"`
	CIDR     netip.Prefix `json:"cidr"`
	IP       netip.Addr   `json:"ip"`
	Hostname string       `json:"hostname"`
	// Domain, when set, makes /etc/hosts name the address
	// <Hostname>.<Domain> first (AttachOptions.Domain).
	Domain   string `json:"domain,omitempty"`
	HostVeth string `json:"hostVeth"`
	// Attached is set once the namespace, veth and /etc files are in place.
	Attached bool      `json:"attached"`
	LeasedAt time.Time `json:"leasedAt"`
}

// name is what the lease's namespace and /etc directory are called.
func (l *lease) name() string {
	if l.Name != "" {
		return l.Name
	}
	return l.TaskID
}

// leaseFile is the on-disk form of the leases.
type leaseFile struct {
	Version int `json:"version"`
	// Last is the last address handed out per subnet, for round robin.
	Last   map[string]netip.Addr `json:"last"`
	Leases map[string]*lease     `json:"leases"`
}

const leaseFileVersion = 1

func (m *Manager) load() error {
	m.leases = map[string]*lease{}
	m.last = map[string]netip.Addr{}
	b, err := os.ReadFile(m.leasePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("network: read leases: %w", err)
	}
	var f leaseFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("network: %s is corrupt (%v); move it away to start with no leases, after detaching every task by hand", m.leasePath, err)
	}
	if f.Version != leaseFileVersion {
		return fmt.Errorf("network: %s has version %d; this build reads version %d", m.leasePath, f.Version, leaseFileVersion)
	}
	for id, l := range f.Leases {
		if l == nil || l.TaskID != id || !l.IP.IsValid() {
			return fmt.Errorf("network: %s: lease %q is malformed", m.leasePath, id)
		}
		m.leases[id] = l
	}
	for s, a := range f.Last {
		m.last[s] = a
	}
	return nil
}

// persistLocked writes the leases durably: temp file, fsync, rename, fsync of
// the directory. m.mu must be held.
func (m *Manager) persistLocked() error {
	b, err := json.MarshalIndent(leaseFile{Version: leaseFileVersion, Last: m.last, Leases: m.leases}, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileDurable(m.leasePath, b); err != nil {
		return fmt.Errorf("network: write leases: %w", err)
	}
	return nil
}

// allocate leases an address on sub to taskID and writes the lease to disk
// before returning it.
func (m *Manager) allocate(sub *subnetState, taskID, hostname, domain string) (*lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, m.errClosed()
	}
	used := map[netip.Addr]bool{}
	vethInUse := map[string]bool{}
	for _, l := range m.leases {
		if l.name() == taskID {
			return nil, errdefs.AlreadyExists("network: %s names the namespace of task %s's attachment (moved to it by Rekey); pick another ID", taskID, l.TaskID)
		}
		if l.Subnet == sub.Name || sub.CIDR.Contains(l.IP) {
			used[l.IP] = true
		}
		vethInUse[l.HostVeth] = true
	}
	ip, ok := nextFree(sub.slice, sub.gateway, m.last[sub.Name], used)
	if !ok {
		if sub.slice != sub.CIDR {
			return nil, errdefs.LimitExceeded("network: subnet %q (%s) is full on this host: all %d task addresses of its slice %s are leased; detach tasks, or place tasks on other hosts",
				sub.Name, sub.CIDR, usableCount(sub.slice, sub.gateway), sub.slice)
		}
		return nil, errdefs.LimitExceeded("network: subnet %q (%s) is full: all %d task addresses are leased; use a larger subnet or detach tasks",
			sub.Name, sub.CIDR, usableCount(sub.slice, sub.gateway))
	}
	veth, err := newVethName(vethInUse)
	if err != nil {
		return nil, err
	}
	if hostname == "" {
		hostname = defaultHostname(ip)
	}
	l := &lease{
		TaskID:   taskID,
		Subnet:   sub.Name,
		CIDR:     sub.CIDR,
		IP:       ip,
		Hostname: hostname,
		Domain:   domain,
		HostVeth: veth,
		LeasedAt: now().UTC(),
	}
	prevLast, hadLast := m.last[sub.Name]
	m.leases[taskID] = l
	m.last[sub.Name] = ip
	if err := m.persistLocked(); err != nil {
		delete(m.leases, taskID)
		if hadLast {
			m.last[sub.Name] = prevLast
		} else {
			delete(m.last, sub.Name)
		}
		return nil, err
	}
	c := *l
	return &c, nil
}

func (m *Manager) markAttached(taskID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[taskID]
	if !ok {
		return errdefs.NotFound("network: lease of task %s vanished during attach", taskID)
	}
	if l.Attached {
		return nil
	}
	l.Attached = true
	if err := m.persistLocked(); err != nil {
		l.Attached = false
		return err
	}
	return nil
}

// release deletes the task's lease and writes the leases durably.
func (m *Manager) release(taskID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[taskID]
	if !ok {
		return nil
	}
	delete(m.leases, taskID)
	if err := m.persistLocked(); err != nil {
		m.leases[taskID] = l
		return err
	}
	return nil
}

// newVethName returns "vh" and 8 random hex digits not used by a lease.
func newVethName(inUse map[string]bool) (string, error) {
	for range 16 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		n := "vh" + hex.EncodeToString(b[:])
		if !inUse[n] && !linkExists(n) {
			return n, nil
		}
	}
	return "", errors.New("network: could not pick a free veth name")
}

func addrToU32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }
func u32ToAddr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// taskRange returns the first and last address a task may get in p (a
// subnet, or a host's slice of one): p's network and broadcast addresses
// are skipped (the subnet's gateway, when inside, is skipped by the caller).
func taskRange(p netip.Prefix) (first, last uint32) {
	network := addrToU32(p.Masked().Addr())
	size := uint32(1) << (32 - p.Bits())
	return network + 1, network + size - 2
}

// usableCount is how many task addresses p holds, gateway gw not counted.
func usableCount(p netip.Prefix, gw netip.Addr) int {
	first, last := taskRange(p)
	if last < first {
		return 0
	}
	n := int(last - first + 1)
	if p.Contains(gw) {
		if v := addrToU32(gw); v >= first && v <= last {
			n--
		}
	}
	return n
}

// nextFree returns the lowest free address of p after last (wrapping
// around), never gw, so that an address just released is not handed out
// again at once.
func nextFree(p netip.Prefix, gw, last netip.Addr, used map[netip.Addr]bool) (netip.Addr, bool) {
	first, end := taskRange(p)
	if end < first {
		return netip.Addr{}, false
	}
	n := end - first + 1
	start := first
	if last.IsValid() && last.Is4() && p.Contains(last) {
		if v := addrToU32(last); v >= first && v < end {
			start = v + 1
		}
	}
	for i := uint32(0); i < n; i++ {
		v := start + i
		if v > end {
			v -= n
		}
		if a := u32ToAddr(v); !used[a] && a != gw {
			return a, true
		}
	}
	return netip.Addr{}, false
}
