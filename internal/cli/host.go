package cli

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/image"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/builtin"
	"vessel.dev/vessel/internal/server"
)

// hostOptions are the flags that describe the local host, shared by
// `vessel server` (in-process agent) and `vessel agent`.
type hostOptions struct {
	runtime               string
	hostID                string
	cpuAllocationRatio    float64
	memoryAllocationRatio float64
	simCreateDelay        time.Duration
	simStartDelay         time.Duration
	hostSubnets           []string
	subnets               []string
	pullBehavior          string
	insecureRegistries    []string
	logMaxBytes           int64
	runscPath             string
	guestKernel           string
	guestBinary           string
	microvmAccel          string
	offer                 []string
	// warmPoolFlags are --warm-pool's values, warmPools what they say
	// (parseWarmPools).
	warmPoolFlags []string
	warmPools     map[string]int
	// endpoint is where a remote agent serves its tasks' logs and execs
	// (set by `vessel agent`, not a flag of its own).
	endpoint string
	// endpointPin is the hex SHA-256 of that endpoint's certificate.
	endpointPin string
	// gatewayDNS says a DNS server answers on each subnet's gateway (set
	// by `vessel server`; network.Config.GatewayDNS).
	gatewayDNS bool
	// advertiseAddress is --advertise-address: this host's underlay
	// address, where the fleet's other hosts reach it.
	advertiseAddress string
	// addressTarget is where the default address is looked for: the local
	// address of the route to it (the control plane, for `vessel agent`).
	addressTarget string
	// networkReady, when set, is called with the host's subnets (those it
	// has a slice of) once the control plane told them, before the host's
	// network opens: `vessel agent` starts its DNS server there.
	networkReady func(ctx context.Context, subnets []network.Subnet) error
}

// addFlags adds the host's flags; the control plane's command defines the
// fleet's subnets with --subnet, an agent's names those it serves.
func (o *hostOptions) addFlags(cmd *cobra.Command, controlPlane bool) {
	f := cmd.Flags()
	f.StringVar(&o.runtime, "runtime", "", "sandbox runtime for tasks that ask for none, one of "+strings.Join(runtime.Names, ", ")+"; default: the strongest that works at native speed on this host (microvm where KVM works, else gvisor, else runc)")
	f.StringVar(&o.hostID, "host-id", "", "this host's ID (default: kept in the data directory, made once)")
	f.Float64Var(&o.cpuAllocationRatio, "cpu-allocation-ratio", 4.0, "allocatable vCPU = physical vCPU × this ratio")
	f.Float64Var(&o.memoryAllocationRatio, "memory-allocation-ratio", 1.0, "allocatable memory = physical memory × this ratio")
	f.DurationVar(&o.simCreateDelay, "sim-create-delay", 20*time.Millisecond, "sim runtime: time a sandbox takes to create")
	f.DurationVar(&o.simStartDelay, "sim-start-delay", 10*time.Millisecond, "sim runtime: time a container takes to start")
	if controlPlane {
		f.StringSliceVar(&o.hostSubnets, "host-subnet", nil, "names of the subnets this server's own host serves (default: all of --subnet)")
		f.StringSliceVar(&o.subnets, "subnet", []string{DefaultSubnet}, "the fleet's subnets as NAME=CIDR[,nat][,peer=SUBNET...][,slice=/N] (repeatable); private unless ,nat; cut off from other subnets unless ,peer=; each host serving one gets a slice of it for its tasks' addresses (/N, default /24, or the whole subnet when it is /24 or smaller)")
	} else {
		f.StringSliceVar(&o.hostSubnets, "host-subnet", nil, "names of the subnets this host serves (default: those of --subnet)")
		f.StringSliceVar(&o.subnets, "subnet", nil, "subnets this host serves, by NAME (the control plane defines them), or NAME=CIDR[,...] exactly as the control plane defines them (repeatable; default: all of the control plane's)")
	}
	f.StringVar(&o.advertiseAddress, "advertise-address", "", "this host's address where the fleet's other hosts reach it (default: the local address of the route to the control plane, or of the default route)")
	f.StringVar(&o.pullBehavior, "image-pull-behavior", agent.PullPreferCached, "prefer-cached (use a cached image) or always (ask the registry each time)")
	f.StringSliceVar(&o.insecureRegistries, "insecure-registry", nil, "registry hosts reached over plain HTTP (repeatable)")
	f.Int64Var(&o.logMaxBytes, "log-max-bytes", 10<<20, "logs kept per task, in bytes, split between its containers")
	f.StringVar(&o.runscPath, "runsc", "", "gVisor's runsc (default: the one scripts/build-runsc built in the cache)")
	f.StringVar(&o.guestKernel, "guest-kernel", "", "micro-VM guest kernel, an ELF vmlinux (default: the one scripts/build-guest-kernel put in the cache)")
	f.StringVar(&o.guestBinary, "guest-binary", "", "the static vessel-guest binary (default: vessel-guest next to this binary)")
	f.StringSliceVar(&o.offer, "runtimes", nil, "runtimes this host offers, if they work (default: "+strings.Join(runtime.Names, ", ")+")")
	f.StringSliceVar(&o.warmPoolFlags, "warm-pool", nil, "warm sandboxes to keep ready per runtime, as RUNTIME=N[,RUNTIME=N...] (repeatable), e.g. runc=2: "+
		"tasks of that runtime on the default subnet that fit the runtime's warm class (runc: every size; gvisor: up to 4 vCPU 8 GB; microvm: up to 2 vCPU 4 GB) take one and start faster; "+
		"RUNTIME:VCPU/GB=N keeps a pool of a larger or smaller size class of gvisor or microvm (a Fargate size, e.g. gvisor:16/120=1), and a task takes from the smallest class that serves it. "+
		"Pools refill in the background and give their memory back to tasks before the host runs short, and a graceful stop deletes them. "+
		"Default: 2 of the warm class for each runtime that works here at native speed (not sim, not an emulated microvm), "+
		"fewer where they would take more than 1/16 of the host's memory (an idle one takes a few MiB for runc, 48 MiB for gvisor, 384 MiB plus 1/64 of the guest's memory for microvm); RUNTIME=0 turns one off")
	f.StringVar(&o.microvmAccel, "microvm-accel", "", "micro-VM accelerator: kvm, tcg, or empty to probe KVM and fall back to emulation (an emulated micro-VM is offered by name, never the default)")
}

// defaultWarmSandboxes is the warm sandboxes a runtime keeps when
// --warm-pool does not name it, and warmPoolShare the share of the
// host's memory (1/16) its idle ones may take at most: fewer on a small
// host.
const (
	defaultWarmSandboxes = 2
	warmPoolShare        = 16
)

// defaultWarmPools is the warm pools of a host: the sizes given
// (--warm-pool), and for every other runtime that works here at native
// speed and can prepare sandboxes ahead (runtime.Warmer; not sim, not an
// emulated micro-VM, whose boots would take the host's CPU), as many as
// fit in 1/16 of the host's memory, at most 2 (runc and gvisor: 2 on
// any host of 2 GiB or more; a micro-VM under KVM: 2 from 14 GiB).
func defaultWarmPools(given map[string]int, rts map[string]runtime.Runtime, native map[string]bool, hostMemoryMiB int64) map[string]int {
	out := maps.Clone(given)
	if out == nil {
		out = map[string]int{}
	}
	for name, rt := range rts {
		w, warms := rt.(runtime.Warmer)
		if _, set := given[name]; set || !warms || !native[name] || name == runtime.Sim {
			continue
		}
		idle := max(w.WarmClass().IdleMemoryMiB, 1)
		out[name] = int(min(defaultWarmSandboxes, hostMemoryMiB/warmPoolShare/idle))
	}
	return out
}

// parseWarmPools checks --warm-pool before anything starts: its form,
// the runtimes' names and the sizes. Whether each runtime works here and
// has warm sandboxes is checked when the agent is made.
func (o *hostOptions) parseWarmPools() error {
	p, err := agent.ParseWarmPools(o.warmPoolFlags)
	if err != nil {
		return err
	}
	o.warmPools = p
	return nil
}

// probeRuntimes makes every runtime this build has and says which work on
// this host and why the others don't, and which of them is the default
// for tasks that name none when --runtime names none (builtin.Default:
// the strongest at native speed).
//
// native holds the runtimes that work here at native speed (not an
// emulated micro-VM).
func (o *hostOptions) probeRuntimes(dataDir string, log *slog.Logger) (rts map[string]runtime.Runtime, native map[string]bool, report []string, def string, err error) {
	for _, name := range o.offer {
		if !runtime.Known(name) {
			return nil, nil, nil, "", fmt.Errorf("runtime %q is not known: the runtimes are %s", name, strings.Join(runtime.Names, ", "))
		}
	}
	h := builtin.Host{DataDir: dataDir, Logger: log, RunscPath: o.runscPath, GuestKernel: o.guestKernel,
		GuestBinary: o.guestBinary, MicroVMAccel: o.microvmAccel,
		SimCreateDelay: o.simCreateDelay, SimStartDelay: o.simStartDelay}
	rts, native = map[string]runtime.Runtime{}, map[string]bool{}
	var found []builtin.Probed
	for _, b := range builtin.Backends {
		if len(o.offer) > 0 && !slices.Contains(o.offer, b.Name) && o.runtime != b.Name {
			report = append(report, b.Name+": not offered (--runtimes)")
			continue
		}
		p := b.Probe(h)
		if p.Runtime != nil {
			rts[b.Name] = p.Runtime
			native[b.Name] = p.Emulated == ""
		}
		found = append(found, p)
		report = append(report, p.Line)
	}
	if len(rts) == 0 {
		return nil, nil, report, "", fmt.Errorf("no runtime works on this host: %s", strings.Join(report, "; "))
	}
	return rts, native, report, builtin.Default(found), nil
}

// newAgent builds the host agent for this machine. A host whose runtimes
// run real processes first registers and asks the control plane for its
// network (joinFleet), so that its tasks' addresses come from its slices.
func (o *hostOptions) newAgent(ctx context.Context, dataDir string, cp agentproto.ControlPlane, log *slog.Logger) (*agent.Agent, []string, error) {
	rts, native, report, def, err := o.probeRuntimes(dataDir, log)
	if err != nil {
		return nil, report, err
	}
	// The names of the runtimes that work, strongest first, an emulated
	// one too (tasks get it by name); the default is the strongest at
	// native speed unless --runtime names one.
	var names []string
	for _, b := range builtin.Backends {
		if rts[b.Name] != nil {
			names = append(names, b.Name)
		}
	}
	if o.runtime != "" {
		def = o.runtime
	}
	if rts[def] == nil {
		return nil, report, fmt.Errorf("runtime %q is not available here (%s)", def, strings.Join(report, "; "))
	}
	id := o.hostID
	if id == "" {
		if id, err = stableHostID(dataDir); err != nil {
			return nil, report, err
		}
	}
	cpu, mem, err := hostCapacity()
	if err != nil {
		return nil, report, err
	}
	subnets, err := parseSubnets(o.subnets, true)
	if err != nil {
		return nil, report, err
	}
	served := o.hostSubnets
	if len(served) == 0 {
		served = subnetNames(subnets)
	}
	var defs []agentproto.FleetSubnet
	for _, s := range subnets {
		if s.CIDR.IsValid() {
			defs = append(defs, s)
		}
	}
	addr, err := o.address()
	if err != nil {
		return nil, report, err
	}
	cfg := agent.Config{
		Host: agentproto.Host{ID: id, MilliCPU: cpu, MemoryMiB: mem,
			CPUAllocationRatio: o.cpuAllocationRatio, MemoryAllocationRatio: o.memoryAllocationRatio,
			Runtimes: names, DefaultRuntime: def, Subnets: served, SubnetDefinitions: defs, Address: addr,
			LogsEndpoint: o.endpoint, EndpointCertSHA256: o.endpointPin},
		ControlPlane: cp, Runtimes: rts, Logger: log, PullBehavior: o.pullBehavior,
		InsecureRegistries: o.insecureRegistries, LogMaxBytes: o.logMaxBytes,
		LogDir: filepath.Join(dataDir, "logs"), TaskDir: filepath.Join(dataDir, "tasks"),
		WarmPools: o.warmPools}
	for name, n := range o.warmPools {
		if rt := agent.PoolRuntime(name); n > 0 && rts[rt] == nil {
			return nil, report, fmt.Errorf("--warm-pool %s=%d: runtime %s is not available on this host (%s)", name, n, rt, strings.Join(report, "; "))
		}
	}
	if len(names) > 1 || names[0] != runtime.Sim {
		if cfg.Images, err = image.Open(image.Config{Root: filepath.Join(dataDir, "images"), Logger: log}); err != nil {
			return nil, report, err
		}
		hn, err := joinFleet(ctx, cp, cfg.Host, log)
		if err != nil {
			return nil, report, err
		}
		own, noSlice := hostSubnets(hn)
		if len(noSlice) > 0 {
			log.Warn("this host was given no slice of some subnets (every slice is held by other hosts): it runs no tasks there", "subnets", noSlice)
		}
		for _, s := range own {
			log.Info("task addresses come from this host's slice", "subnet", s.Name, "cidr", s.CIDR, "slice", s.Slice)
		}
		if o.networkReady != nil {
			if err := o.networkReady(ctx, own); err != nil {
				return nil, report, err
			}
		}
		if cfg.Network, err = network.Open(network.Config{StateDir: filepath.Join(dataDir, "network"), Subnets: own, GatewayDNS: o.gatewayDNS, Logger: log}); err != nil {
			return nil, report, err
		}
		cfg.WarmSubnet = warmSubnet(own)
		if cfg.WarmSubnet != "" {
			cfg.WarmPools = defaultWarmPools(o.warmPools, rts, native, mem)
		}
	}
	a, err := agent.New(cfg)
	report = append(report, "default: "+def)
	return a, report, err
}

// warmSubnet is the subnet warm sandboxes attach to: the one tasks get
// when they name none (server.DefaultSubnet) if this host has a slice of
// it, else its first subnet.
func warmSubnet(own []network.Subnet) string {
	names := make([]string, 0, len(own))
	for _, s := range own {
		if s.Name == server.DefaultSubnet {
			return s.Name
		}
		names = append(names, s.Name)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// joinFleet registers h, retrying while the control plane does not answer,
// and returns the host's view of the fleet network. A registration the
// control plane refuses (a subnet defined otherwise, a revoked host) ends
// it with that error.
func joinFleet(ctx context.Context, cp agentproto.ControlPlane, h agentproto.Host, log *slog.Logger) (agentproto.HostNetwork, error) {
	src, ok := cp.(agentproto.NetworkSource)
	if !ok {
		return agentproto.HostNetwork{}, fmt.Errorf("the control plane serves no fleet network (agentproto.NetworkSource)")
	}
	for {
		err := cp.RegisterHost(ctx, h)
		if err == nil {
			var hn agentproto.HostNetwork
			if hn, err = src.HostNetwork(ctx, h.ID, 0); err == nil {
				return hn, nil
			}
		}
		if errdefs.IsInvalidArgument(err) || errdefs.IsPermissionDenied(err) {
			return agentproto.HostNetwork{}, fmt.Errorf("registering host %s: %w", h.ID, err)
		}
		log.Warn("registering the host with the control plane failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return agentproto.HostNetwork{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// address is --advertise-address, or the local address of the route to
// addressTarget (or of the default route); the zero Addr when there is
// none.
func (o *hostOptions) address() (netip.Addr, error) {
	if o.advertiseAddress != "" {
		a, err := netip.ParseAddr(o.advertiseAddress)
		if err != nil || a.IsUnspecified() || a.IsMulticast() {
			return netip.Addr{}, fmt.Errorf("--advertise-address %q is not a unicast IP address: give this host's address where the other hosts reach it", o.advertiseAddress)
		}
		return a, nil
	}
	target := o.addressTarget
	if target == "" {
		target = "192.0.2.1:9" // any address the default route takes (TEST-NET-1; nothing is sent)
	}
	a, ok := localAddressTo(target)
	if !ok {
		return netip.Addr{}, nil
	}
	return a, nil
}

// localAddressTo returns the local address of the route to hostport (a UDP
// socket connected there sends nothing).
func localAddressTo(hostport string) (netip.Addr, bool) {
	c, err := net.Dial("udp", hostport)
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	a, ok := netip.AddrFromSlice(c.LocalAddr().(*net.UDPAddr).IP)
	return a.Unmap(), ok
}

// stableHostID reads the host ID kept in the data directory, making one
// on first use.
func stableHostID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "host-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	}
	name, _ := os.Hostname()
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(name))
	id := fmt.Sprintf("host-%s-%d", name, time.Now().Unix()%100000)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("saving host ID: %w", err)
	}
	return id, nil
}

// hostCapacity reads this machine's CPUs and memory.
func hostCapacity() (milliCPU, memoryMiB int64, err error) {
	milliCPU = int64(goruntime.NumCPU()) * 1000
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0, fmt.Errorf("reading host memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("reading host memory: %w", err)
			}
			return milliCPU, kb / 1024, nil
		}
	}
	return 0, 0, fmt.Errorf("reading host memory: no MemTotal in /proc/meminfo")
}
