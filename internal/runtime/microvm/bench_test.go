package microvm_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/guestproto"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/microvm"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// BenchmarkCreateStart measures, in one run, Create+Start of a
// one-container sandbox (until the container runs) and Claim+Start of the
// same task in a warm VM (runtime.Warmer, booted outside the timed
// region) against a bare QEMU boot of the same kernel and initramfs to
// the guest agent's first answer (no disks, no network, no cgroup, no
// monitor), and the host memory of an idle VM: QEMU's and the monitor's
// resident sets, of the task's VM and of an idle warm VM of the warm
// class. Under TCG (no usable KVM) every figure is one of emulation; the
// accelerator is logged.
func BenchmarkCreateStart(b *testing.B) {
	needVM(b)
	layer := runtimetest.BusyboxLayer(b)
	dir := b.TempDir()
	rt := newRuntime(b, dir)
	b.Logf("accelerator: %s", rt.Accel())
	initrd, _ := filepath.Glob(filepath.Join(dir, "cache", "initramfs-*.cpio"))
	if len(initrd) != 1 {
		b.Fatalf("initramfs not found in the runtime's cache: %v", initrd)
	}
	ctx := context.Background()
	var bare, full, warm time.Duration
	var qemuRSS, monRSS, warmRSS int64
	class := rt.WarmClass()
	for i := 0; b.Loop(); i++ {
		d, err := bareBoot(rt.Accel(), initrd[0], b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		bare += d
		id := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		err = rt.Create(ctx, runtime.Spec{ID: id, MilliCPU: 1000, MemoryMiB: 512, EphemeralStorageGiB: 1,
			LogDir:     filepath.Join(dir, "logs", id),
			Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"sleep", "1000"}}}})
		if err == nil {
			err = rt.Start(ctx, id, "app")
		}
		if err != nil {
			b.Fatal(err)
		}
		full += time.Since(start)
		time.Sleep(500 * time.Millisecond) // idle
		qemuRSS += rss(pidIn(filepath.Join(dir, id, "qemu.pid")))
		monRSS += rss(pidIn(filepath.Join(dir, id, "monitor.pid")))
		if err := rt.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}

		// Warm: boot (untimed), idle memory, then Claim+Start timed.
		b.StopTimer()
		wid := fmt.Sprintf("bench-warm-%d", i)
		if err := rt.Warm(ctx, runtime.Spec{ID: wid, MilliCPU: class.MilliCPU, MemoryMiB: class.MemoryMiB, EphemeralStorageGiB: 1}); err != nil {
			b.Fatal(err)
		}
		// Idle, as a warm VM of a pool is before its claim.
		time.Sleep(2 * time.Second)
		warmRSS += rss(pidIn(filepath.Join(dir, wid, "qemu.pid"))) + rss(pidIn(filepath.Join(dir, wid, "monitor.pid")))
		b.StartTimer()
		id = fmt.Sprintf("bench-claim-%d", i)
		start = time.Now()
		err = rt.Claim(ctx, wid, runtime.Spec{ID: id, MilliCPU: 1000, MemoryMiB: 512, EphemeralStorageGiB: 1,
			LogDir:     filepath.Join(dir, "logs", id),
			Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"sleep", "1000"}}}})
		if err == nil {
			err = rt.Start(ctx, id, "app")
		}
		if err != nil {
			b.Fatal(err)
		}
		warm += time.Since(start)
		if err := rt.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(bare.Milliseconds())/n, "bare-boot-ms")
	b.ReportMetric(float64(full.Milliseconds())/n, "create+start-ms")
	b.ReportMetric(float64(full)/float64(bare), "ratio")
	b.ReportMetric(float64(warm.Milliseconds())/n, "warm-claim+start-ms")
	b.ReportMetric(float64(warm)/float64(bare), "warm/bare")
	b.ReportMetric(float64(warm)/float64(full), "warm/cold")
	b.ReportMetric(float64(warmRSS)/n/(1<<20), "warm-idle-rss-MiB")
	b.ReportMetric(float64(qemuRSS)/n/(1<<20), "qemu-rss-MiB")
	b.ReportMetric(float64(monRSS)/n/(1<<20), "monitor-rss-MiB")
}

// bareBoot boots QEMU with the kernel and initramfs and a control port
// only, and returns the time until the agent answers a hello.
func bareBoot(accel, initrd, dir string) (time.Duration, error) {
	sock := filepath.Join(dir, "ctl.sock")
	khz := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				khz = fmt.Sprintf("tsc_early_khz=%d", int64(f*1000))
				break
			}
		}
	}
	start := time.Now()
	cmd := exec.Command("qemu-system-x86_64", "-M", "microvm,acpi=on,isa-serial=on,rtc=on", "-nodefaults",
		"-no-user-config", "-display", "none", "-accel", accel, "-cpu", "max", "-m", "512", "-smp", "1",
		"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 quiet panic=-1 pci=off "+khz,
		"-no-reboot", "-serial", "null", "-device", "virtio-serial-device",
		"-chardev", "socket,id=ctl,path="+sock+",server=on,wait=off",
		"-device", "virtserialport,chardev=ctl,name="+guestproto.PortName)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	var c net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, err
		}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	conn := guestproto.NewConn(c, c)
	if err := conn.Send(guestproto.Msg{Op: guestproto.OpHello}); err != nil {
		return 0, err
	}
	if _, err := conn.Recv(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func pidIn(path string) int {
	data, _ := os.ReadFile(path)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// rss is a process's resident set in bytes.
func rss(pid int) int64 {
	kib, _ := runtimetest.ResidentKiB(pid)
	return kib << 10
}

var _ = microvm.Name
