package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/vishvananda/netlink"

	"vessel.dev/vessel/internal/testutil"
)

// requireRoot skips tests of real sandboxes when not root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("real sandboxes need root (namespaces, cgroups, mounts); run the suite as root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed; scripts/setup installs it")
	}
}

// freeSubnet picks a 10.Y.X.0/24 (Y in 90..249) that overlaps no network
// of the host's interfaces, so tests never touch a real Vessel's subnet.
func freeSubnet(t testing.TB) string {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	for i := 0; i < 200; i++ {
		_, cidr, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 90+rand.IntN(160), rand.IntN(256)))
		used := false
		for _, a := range addrs {
			if ip, n, err := net.ParseCIDR(a.String()); err == nil && (cidr.Contains(ip) || n.Contains(cidr.IP)) {
				used = true
			}
		}
		if !used {
			return cidr.String()
		}
	}
	t.Fatal("no free 10.89.X.0/24 subnet")
	return ""
}

// startRuncServer starts vessel server on runc with its own subnet, and
// stops every task and removes the subnet's bridge when the test ends.
func startRuncServer(t *testing.T, extra ...string) *server {
	t.Helper()
	return startSubnetServer(t, append([]string{"--runtime", "runc"}, extra...)...)
}

// startSubnetServer starts vessel server with real runtimes on a subnet of
// its own, and stops every task and removes the subnet's bridge when the
// test ends.
func startSubnetServer(t *testing.T, extra ...string) *server {
	t.Helper()
	requireRoot(t)
	cidr := freeSubnet(t)
	s := startServer(t, append([]string{"--subnet", "subnet-default=" + cidr}, extra...)...)
	s.subnet = cidr
	t.Cleanup(func() {
		if s.cmd != nil {
			stopAll(t, s)
		}
		removeBridges(cidr)
	})
	return s
}

func stopAll(t *testing.T, s *server) {
	c := s.ecsClient()
	ctx := context.Background()
	out, err := c.ListTasks(ctx, &ecs.ListTasksInput{})
	if err != nil {
		return
	}
	for _, arn := range out.TaskArns {
		c.StopTask(ctx, &ecs.StopTaskInput{Task: aws.String(arn), Reason: aws.String("test cleanup")})
	}
	testutil.Wait(60*time.Second, func() error {
		out, err := c.ListTasks(ctx, &ecs.ListTasksInput{DesiredStatus: ecstypes.DesiredStatusStopped})
		if err != nil {
			return nil // the server is gone: nothing to wait for
		}
		d, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: append(out.TaskArns, "none")})
		if err != nil {
			return nil
		}
		for _, tk := range d.Tasks {
			if aws.ToString(tk.LastStatus) != "STOPPED" {
				return errors.New("a task is not STOPPED yet")
			}
		}
		return nil
	})
}

func removeBridges(cidr string) {
	_, subnet, _ := net.ParseCIDR(cidr)
	links, _ := netlink.LinkList()
	for _, l := range links {
		if !strings.HasPrefix(l.Attrs().Name, "vsl-") {
			continue
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			if subnet.Contains(a.IP) {
				netlink.LinkDel(l)
			}
		}
	}
}

// taskIP reads a task's private address from its network attachment.
func taskIP(tk ecstypes.Task) string {
	for _, a := range tk.Attachments {
		for _, d := range a.Details {
			if aws.ToString(d.Name) == "privateIPv4Address" {
				return aws.ToString(d.Value)
			}
		}
	}
	return ""
}

func runImage(t *testing.T, c *ecs.Client, family, image string, memMiB string, cmd ...string) string {
	t.Helper()
	_, err := c.RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
		Cpu: aws.String("256"), Memory: aws.String(memMiB), NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(image), Command: cmd,
			StopTimeout: aws.Int32(2)}}})
	if err != nil {
		t.Fatalf("registering %s: %v", family, err)
	}
	return runOne(t, c, family)
}

// TestRuncEndToEnd runs real sandboxes through the built binary: output
// through `vessel logs`, two tasks talking over TCP by IP, a memory hog
// stopped with OutOfMemoryError, and a task that keeps running across a
// kill -9 of the server and reports its later exit code.
func TestRuncEndToEnd(t *testing.T) {
	s := startRuncServer(t)
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh", "-c", "echo default command"}, busyboxLayer(t))
	c := s.ecsClient()

	t.Run("OutputThroughLogs", func(t *testing.T) {
		stdout, stderr, code := s.vessel("run", img, "--", "sh", "-c", "echo hello from vessel; echo to stderr >&2; echo FROM_IMAGE=$FROM_IMAGE; exit 4")
		if code != 4 {
			t.Fatalf("vessel run exit code %d, want 4\nstdout:%s\nstderr:%s\nserver log:\n%s", code, stdout, stderr, s.log)
		}
		if !strings.Contains(stdout, "hello from vessel") || !strings.Contains(stdout, "FROM_IMAGE=yes") {
			t.Fatalf("vessel run printed no output:\n%s\nstderr:\n%s", stdout, stderr)
		}
		id := strings.TrimSpace(strings.SplitN(stderr, "\n", 2)[0])
		logs, lerr, lcode := s.vessel("logs", id)
		if lcode != 0 || !strings.Contains(logs, "hello from vessel") || !strings.Contains(logs, "to stderr") {
			t.Fatalf("vessel logs %s: code %d\n%s\n%s", id, lcode, logs, lerr)
		}
		withTimes, _, _ := s.vessel("logs", "-t", id)
		if !strings.Contains(withTimes, time.Now().UTC().Format("2006-01-02T")) {
			t.Fatalf("vessel logs -t shows no timestamps:\n%s", withTimes)
		}
		def, _, _ := s.vessel("run", img)
		if !strings.Contains(def, "default command") {
			t.Fatalf("the image's default command did not run: %q", def)
		}
	})

	t.Run("TwoTasksTalkOverTCP", func(t *testing.T) {
		server := runImage(t, c, "listener", img, "512", "sh", "-c", "echo pong | nc -l -p 7070")
		st := waitFor(t, c, server, "RUNNING", 60*time.Second)
		ip := taskIP(st)
		if ip == "" {
			t.Fatalf("the running task has no private IP: %+v", st.Attachments)
		}
		client := runImage(t, c, "dialer", img, "512", "sh", "-c", fmt.Sprintf("sleep 1; echo ping | nc %s 7070", ip))
		done := waitFor(t, c, client, "STOPPED", 60*time.Second)
		if code := done.Containers[0].ExitCode; code == nil || *code != 0 {
			t.Fatalf("the dialer exited with %v: %s", code, aws.ToString(done.StoppedReason))
		}
		out, _, _ := s.vessel("logs", client)
		if !strings.Contains(out, "pong") {
			t.Fatalf("the dialer did not get the listener's answer; its log:\n%s", out)
		}
		in, _, _ := s.vessel("logs", server)
		if !strings.Contains(in, "ping") {
			t.Fatalf("the listener did not get the dialer's message; its log:\n%s", in)
		}
	})

	t.Run("MemoryHogIsOOMKilled", func(t *testing.T) {
		hog := runImage(t, c, "hog", img, "512", "tail", "/dev/zero")
		st := waitFor(t, c, hog, "STOPPED", 60*time.Second)
		if !strings.HasPrefix(aws.ToString(st.StoppedReason), "OutOfMemoryError") {
			t.Fatalf("stoppedReason %q, want OutOfMemoryError: ...", aws.ToString(st.StoppedReason))
		}
		if code := st.Containers[0].ExitCode; code == nil || *code != 137 {
			t.Fatalf("exit code %v, want 137", code)
		}
	})

	t.Run("GracefulRestartWhileStopping", func(t *testing.T) {
		// sleep is PID 1 and ignores SIGTERM: the task stays STOPPING for its
		// 2 s stop timeout. The server is stopped meanwhile; it must exit at
		// once, leave the sandbox alone, and finish the stop when it is back.
		arn := runImage(t, c, "stubborn", img, "512", "sleep", "1000")
		waitFor(t, c, arn, "RUNNING", 60*time.Second)
		if _, err := c.StopTask(context.Background(), &ecs.StopTaskInput{Task: aws.String(arn)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, c, arn, "STOPPING", 30*time.Second)
		began := time.Now()
		s.kill(syscall.SIGTERM)
		if took := time.Since(began); took > 8*time.Second {
			t.Fatalf("vessel server took %s to shut down with a task STOPPING", took)
		}
		s.start()
		st := waitFor(t, c, arn, "STOPPED", 60*time.Second)
		if code := st.Containers[0].ExitCode; code == nil || *code != 137 {
			t.Fatalf("exit code %v, want 137 (SIGKILL after the stop timeout), reason %q", code, aws.ToString(st.StoppedReason))
		}
	})

	t.Run("SurvivesServerKill", func(t *testing.T) {
		arn := runImage(t, c, "survivor", img, "512", "sh", "-c", "echo before the crash; sleep 4; echo after the crash; exit 5")
		waitFor(t, c, arn, "RUNNING", 60*time.Second)
		time.Sleep(500 * time.Millisecond)
		s.kill(syscall.SIGKILL)
		time.Sleep(time.Second)
		s.start()
		st := waitFor(t, c, arn, "STOPPED", 60*time.Second)
		if code := st.Containers[0].ExitCode; code == nil || *code != 5 {
			t.Fatalf("exit code after the restart %v, want 5", code)
		}
		out, _, _ := s.vessel("logs", arn)
		if !strings.Contains(out, "before the crash") || !strings.Contains(out, "after the crash") {
			t.Fatalf("logs lost across the restart:\n%s", out)
		}
	})
}

// TestHostileImageIsRefused pulls an image whose layers try to escape
// their root: the task stops with CannotPullContainerError naming the
// entry, and nothing outside the cache changes.
func TestHostileImageIsRefused(t *testing.T) {
	s := startRuncServer(t)
	reg := newRegistry(t)
	c := s.ecsClient()
	marker := "vessel-hostile-" + fmt.Sprint(rand.Int64())
	escape := reg.push("evil:dotdot", []string{"true"}, busyboxLayer(t), layerFrom(t, []tarEntry{
		{hdr: tarHeader("../../../../../../tmp/"+marker, 0o644), body: []byte("escaped")},
	}))
	symlink := reg.push("evil:symlink", []string{"true"}, busyboxLayer(t), layerFrom(t, []tarEntry{
		{hdr: symlinkHeader("evil", "../../../../../../tmp")},
		{hdr: tarHeader("evil/"+marker, 0o644), body: []byte("escaped")},
	}))
	for name, img := range map[string]string{"dotdot": escape, "symlink": symlink} {
		t.Run(name, func(t *testing.T) {
			arn := runImage(t, c, "evil-"+name, img, "512", "true")
			st := waitFor(t, c, arn, "STOPPED", 60*time.Second)
			reason := aws.ToString(st.StoppedReason)
			if !strings.HasPrefix(reason, "CannotPullContainerError") || !strings.Contains(reason, "evil") && !strings.Contains(reason, "..") {
				t.Fatalf("stoppedReason %q, want CannotPullContainerError naming the bad entry", reason)
			}
			if st.StopCode != ecstypes.TaskStopCodeTaskFailedToStart {
				t.Errorf("stopCode %s, want TaskFailedToStart", st.StopCode)
			}
			if _, err := os.Stat(filepath.Join("/tmp", marker)); err == nil {
				os.Remove(filepath.Join("/tmp", marker))
				t.Fatalf("the hostile layer wrote /tmp/%s outside the cache", marker)
			}
		})
	}
}
