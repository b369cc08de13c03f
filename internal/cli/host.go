package cli

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/sim"
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
}

func (o *hostOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.runtime, "runtime", "", "sandbox runtime for tasks that ask for none (available: sim); default: the strongest that works on this host")
	f.StringVar(&o.hostID, "host-id", "", "this host's ID (default: kept in the data directory, made once)")
	f.Float64Var(&o.cpuAllocationRatio, "cpu-allocation-ratio", 4.0, "allocatable vCPU = physical vCPU × this ratio")
	f.Float64Var(&o.memoryAllocationRatio, "memory-allocation-ratio", 1.0, "allocatable memory = physical memory × this ratio")
	f.DurationVar(&o.simCreateDelay, "sim-create-delay", 20*time.Millisecond, "sim runtime: time a sandbox takes to create")
	f.DurationVar(&o.simStartDelay, "sim-start-delay", 10*time.Millisecond, "sim runtime: time a container takes to start")
	f.StringSliceVar(&o.hostSubnets, "host-subnet", nil, "subnets this host reaches (default: all the control plane knows)")
}

// probeRuntimes makes every runtime this build has and says which work.
// Only sim exists so far; real runtimes join it as they land.
func (o *hostOptions) probeRuntimes(dataDir string) (map[string]runtime.Runtime, []string, error) {
	rts := map[string]runtime.Runtime{}
	var report []string
	simRT, err := sim.New(sim.Config{StateDir: filepath.Join(dataDir, "sandboxes", sim.Name),
		CreateDelay: o.simCreateDelay, StartDelay: o.simStartDelay})
	if err != nil {
		report = append(report, "sim: unavailable: "+err.Error())
	} else {
		rts[sim.Name] = simRT
		report = append(report, "sim: works (no isolation: sandboxes run no process)")
	}
	if len(rts) == 0 {
		return nil, report, fmt.Errorf("no runtime works on this host: %s", strings.Join(report, "; "))
	}
	return rts, report, nil
}

// strongest lists runtimes from strongest isolation to weakest.
var strongest = []string{"microvm", "gvisor", "runc", sim.Name}

// newAgent builds the host agent for this machine.
func (o *hostOptions) newAgent(dataDir string, cp agentproto.ControlPlane, log *slog.Logger) (*agent.Agent, []string, error) {
	rts, report, err := o.probeRuntimes(dataDir)
	if err != nil {
		return nil, report, err
	}
	def := o.runtime
	if def == "" {
		for _, name := range strongest {
			if rts[name] != nil {
				def = name
				break
			}
		}
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
	var names []string
	for _, name := range strongest {
		if rts[name] != nil {
			names = append(names, name)
		}
	}
	a, err := agent.New(agent.Config{
		Host: agentproto.Host{ID: id, MilliCPU: cpu, MemoryMiB: mem,
			CPUAllocationRatio: o.cpuAllocationRatio, MemoryAllocationRatio: o.memoryAllocationRatio,
			Runtimes: names, DefaultRuntime: def, Subnets: o.hostSubnets},
		ControlPlane: cp, Runtimes: rts, Logger: log})
	report = append(report, "default: "+def)
	return a, report, err
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
