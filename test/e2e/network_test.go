package e2e

import (
	"archive/tar"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/vishvananda/netlink"

	"vessel.dev/vessel/internal/testutil"
)

// spoofLayer is a layer with /bin/spoof (testdata/spoof, a static binary
// that forges frames with CAP_NET_RAW, which tasks have by default).
func spoofLayer(t *testing.T) tarEntry {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "spoof")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/spoof")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/spoof: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return tarEntry{hdr: tar.Header{Name: "bin/spoof", Typeflag: tar.TypeReg, Mode: 0o755}, body: b}
}

// hostAddress is an IPv4 address of the host that is not loopback nor on a
// test bridge (the default route's source where there is one).
func hostAddress(t *testing.T) netip.Addr {
	t.Helper()
	if rs, err := netlink.RouteGet(net.ParseIP("192.0.2.200")); err == nil && len(rs) > 0 && rs[0].Src != nil {
		if a, ok := netip.AddrFromSlice(rs[0].Src.To4()); ok && !a.IsLoopback() {
			return a
		}
	}
	addrs, _ := netlink.AddrList(nil, netlink.FAMILY_V4)
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if ok && !ip.IsLoopback() && !strings.HasPrefix(ip.String(), "10.") {
			return ip
		}
	}
	t.Skip("the host has no address besides loopback and 10.x")
	return netip.Addr{}
}

// TestNetworkBoundary runs real runc tasks on three subnets (a and b each
// a peer of c, not of each other) and shows that a task reaches, on its
// host, only DNS on its gateway: not a host service on 0.0.0.0 through the
// gateway nor through the host's address; not a task of subnet b; a task
// of its peer c yes; and that frames it forges (another MAC, another
// address) never reach their receiver while genuine ones do.
func TestNetworkBoundary(t *testing.T) {
	requireRoot(t)
	var cidrs []string
	for len(cidrs) < 3 {
		c := freeSubnet(t)
		if !strings.Contains(strings.Join(cidrs, " "), c) {
			cidrs = append(cidrs, c)
		}
	}
	s := startServer(t, "--runtime", "runc",
		"--subnet", "subnet-a="+cidrs[0]+",peer=subnet-c",
		"--subnet", "subnet-b="+cidrs[1]+",peer=subnet-c",
		"--subnet", "subnet-c="+cidrs[2])
	s.subnet = cidrs[0]
	t.Cleanup(func() {
		if s.cmd != nil {
			stopAll(t, s)
		}
		for _, c := range cidrs {
			removeBridges(c)
		}
	})
	gw := netip.MustParsePrefix(cidrs[0]).Addr().Next()

	var hostHits atomic.Int32
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostHits.Add(1)
		fmt.Fprintln(w, "host service")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	hostPort := ln.Addr().(*net.TCPAddr).Port
	other := hostAddress(t)
	// The listener answers on the host's address from the host itself.
	for _, a := range []netip.Addr{other} {
		if r, err := http.Get(fmt.Sprintf("http://%s:%d/", a, hostPort)); err != nil {
			t.Fatalf("the host's own request to %s: %v", a, err)
		} else {
			r.Body.Close()
		}
	}
	hostHits.Store(0)

	reg := newRegistry(t)
	img := reg.push("netbox:1", []string{"sh"}, busyboxLayer(t), layerFrom(t, []tarEntry{spoofLayer(t)}))
	c := s.ecsClient()
	ctx := context.Background()
	register := func(family, script string) {
		t.Helper()
		if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
				EntryPoint: []string{"sh", "-c"}, Command: []string{script}, StopTimeout: aws.Int32(2)}}}); err != nil {
			t.Fatal(err)
		}
	}
	// launch starts a task; run also waits for it RUNNING and gives its IP.
	launch := func(family, subnet string) (arn string) {
		t.Helper()
		out, err := c.RunTask(ctx, &ecs.RunTaskInput{TaskDefinition: aws.String(family),
			NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{Subnets: []string{subnet}}}})
		if err != nil || len(out.Tasks) != 1 {
			t.Fatalf("RunTask %s: %v %+v", family, err, out)
		}
		arn = aws.ToString(out.Tasks[0].TaskArn)
		t.Cleanup(func() {
			c.StopTask(ctx, &ecs.StopTaskInput{Task: aws.String(arn), Reason: aws.String("test cleanup")})
			waitFor(t, c, arn, "STOPPED", 60*time.Second)
		})
		return arn
	}
	run := func(family, subnet string) (arn, ip string) {
		t.Helper()
		arn = launch(family, subnet)
		return arn, taskIP(waitFor(t, c, arn, "RUNNING", 60*time.Second))
	}
	register("web", "mkdir -p /www; echo ok >/www/index.html; exec httpd -f -p 8080 -h /www")
	register("listen", "exec spoof listen 9999")
	_, ipB := run("web", "subnet-b")
	_, ipC := run("web", "subnet-c")
	listenARN, ipL := run("listen", "subnet-a")

	register("probe", fmt.Sprintf(`for u in %s:%d %s:%d %s:8080 %s:8080; do
  if printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 3 ${u%%:*} ${u##*:} | grep -q ' 200 '; then echo "REACHED $u"; else echo "BLOCKED $u"; fi
done
nslookup nothere.default.vessel.local %s 2>&1; echo DNS-DONE`, gw, hostPort, other, hostPort, ipB, ipC, gw))
	register("spoof", fmt.Sprintf("spoof send %s 9999 %s", ipL, gw))
	logsOf := func(arn string) string {
		out, _, _ := s.vessel("logs", arn)
		return out
	}
	probeARN := runOne(t, c, "probe")
	waitFor(t, c, probeARN, "STOPPED", 120*time.Second)
	probeLog := logsOf(probeARN)
	for _, want := range []string{
		fmt.Sprintf("BLOCKED %s:%d", gw, hostPort),
		fmt.Sprintf("BLOCKED %s:%d", other, hostPort),
		fmt.Sprintf("BLOCKED %s:8080", ipB),
		fmt.Sprintf("REACHED %s:8080", ipC),
		"NXDOMAIN", "DNS-DONE",
	} {
		if !strings.Contains(probeLog, want) {
			t.Errorf("probe task: no %q in its log:\n%s", want, probeLog)
		}
	}
	if n := hostHits.Load(); n != 0 {
		t.Errorf("the host's service on 0.0.0.0 was reached %d times from a task", n)
	}

	// The sender exits as soon as it has sent: it may be RUNNING too
	// briefly to be seen, so the receiver's log is what is waited for.
	spoofARN := launch("spoof", "subnet-a")
	var listenLog string
	testutil.Eventually(t, 30*time.Second, func() error {
		if listenLog = logsOf(listenARN); !strings.Contains(listenLog, `"genuine"`) {
			return fmt.Errorf("the receiver never got the genuine datagram:\n%s\nsender:\n%s", listenLog, logsOf(spoofARN))
		}
		return nil
	})
	if strings.Contains(listenLog, "forged") {
		t.Errorf("the receiver got a forged frame:\n%s\nsender:\n%s", listenLog, logsOf(spoofARN))
	}
}
