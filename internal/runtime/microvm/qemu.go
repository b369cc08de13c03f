package microvm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// tscArg gives the guest the host's TSC frequency: without it, about one
// boot in five hangs calibrating the TSC under emulation.
func tscArg() string {
	if khz := hostTSCkHz(); khz > 0 {
		return "tsc_early_khz=" + strconv.FormatInt(khz, 10)
	}
	return ""
}

func hostTSCkHz() int64 {
	if data, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil {
			return n
		}
	}
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return int64(f * 1000)
			}
		}
	}
	return 0
}

// vmDisk is one virtio-blk disk of a VM; the guest finds it by serial.
type vmDisk struct {
	Serial   string `json:"serial"`
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly"`
}

// qemuArgs is QEMU's command line for a sandbox.
func (r *Runtime) qemuArgs(dir string, vcpus, memMiB int64, disks []vmDisk, mac string) []string {
	accel := r.accel
	if accel == AccelTCG {
		// Bound the translation cache (1 GiB by default) to keep an idle
		// VM's footprint small.
		accel = "tcg,tb-size=64"
	}
	cpu := "max"
	if r.accel == AccelKVM {
		cpu = "host"
	}
	args := []string{
		"-M", "microvm,acpi=on,isa-serial=on,rtc=on", "-nodefaults", "-no-user-config",
		"-display", "none", "-accel", accel, "-cpu", cpu,
		"-m", strconv.FormatInt(memMiB, 10), "-smp", strconv.FormatInt(vcpus, 10),
		"-kernel", r.cfg.KernelPath, "-initrd", r.initrdPath,
		"-append", "console=ttyS0 quiet panic=-1 pci=off " + tscArg(),
		"-no-reboot",
		// Appended to, so that the monitor can empty it at its cap.
		"-chardev", "file,id=con,append=on,path=" + filepath.Join(dir, "console.log"), "-serial", "chardev:con",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=ctl,path=" + filepath.Join(dir, "ctl.sock") + ",server=on,wait=off",
		"-device", "virtserialport,chardev=ctl,name=vessel.ctl",
		// QEMU's view of its queues, for a guest that does not answer
		// (virtioQueues); in the sandbox's directory, which only root reaches.
		"-qmp", "unix:" + filepath.Join(dir, qmpSocket) + ",server=on,wait=off",
		"-daemonize", "-pidfile", filepath.Join(dir, "qemu.pid"),
		"-sandbox", qemuSandbox,
	}
	if r.qemuUser != "" {
		// QEMU opens every file it uses (disks, kernel, sockets, the tap,
		// the console log) before it drops to this user.
		args = append(args, "-runas", r.qemuUser)
	}
	for i, d := range disks {
		id := fmt.Sprintf("d%d", i)
		drive := "id=" + id + ",file=" + d.Path + ",format=raw,if=none,cache=unsafe"
		if d.ReadOnly {
			drive = "id=" + id + ",file=" + d.Path + ",format=raw,if=none,readonly=on"
		}
		args = append(args, "-drive", drive, "-device", "virtio-blk-device,drive="+id+",serial="+d.Serial)
	}
	if mac != "" {
		args = append(args, "-netdev", "tap,id=n0,ifname="+tapLink+",script=no,downscript=no",
			"-device", "virtio-net-device,netdev=n0,mac="+mac)
	}
	return args
}

// ensureSystemUser makes the system user name (and its group) unless it
// exists: no home, no login shell.
func ensureSystemUser(name string) error {
	if _, err := user.Lookup(name); err == nil {
		return nil
	}
	out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", "--comment", "Vessel micro-VM QEMU", name).CombinedOutput()
	if err != nil {
		if _, lerr := user.Lookup(name); lerr == nil {
			return nil // made meanwhile by another runtime
		}
		return fmt.Errorf("user %s: useradd: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}
