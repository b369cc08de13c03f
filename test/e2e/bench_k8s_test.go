package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"vessel.dev/vessel/test/k8senv"
)

// BenchmarkPodStartup creates VESSEL_BENCH_PODS pods (100) at once through
// a real kube-apiserver and measures creation → Running for each, on the
// sim runtime (the control path alone), runc, and the host's default
// runtime (the strongest that works at native speed; gvisor here).
// The baseline, measured in the same run, is the same pods' tasks from
// the control plane's own timestamps (task created → RUNNING): the ratio
// is what the Kubernetes path adds. VESSEL_BENCH_RUNTIMES (sim,runc,default)
// picks the runtimes. The host's allocation ratios are raised (CPU 64,
// memory 4) so that every pod fits on this one host.
func BenchmarkPodStartup(b *testing.B) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("VESSEL_BENCH_PODS")); err == nil && v > 0 {
		n = v
	}
	runtimes := strings.Split(envOr("VESSEL_BENCH_RUNTIMES", "sim,runc,default"), ",")
	for _, rt := range runtimes {
		b.Run(rt, func(b *testing.B) {
			for range b.N {
				benchPods(b, rt, n)
			}
		})
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func benchPods(b *testing.B, rt string, n int) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for real sandboxes")
	}
	c := k8senv.Start(b)
	c.StartControllerManager(b)
	t := b // temporary directories and processes go with the benchmark
	reg := newRegistry(b)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	cidr := freeSubnet(t)
	webhookPort := freePort(t)
	args := []string{"--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1", "--webhook-port", webhookPort,
		"--kubelet-port", freePort(t), "--subnet", "subnet-default=" + cidr,
		"--cpu-allocation-ratio", "64", "--memory-allocation-ratio", "4", "--launch-rate", "0", "--api-rate", "0"}
	switch rt {
	case "sim", "runc":
		args = append(args, "--runtimes", "sim,runc", "--runtime", rt)
	case "default":
		args = append(args, "--runtimes", "microvm,gvisor,runc,sim")
	default:
		b.Fatalf("unknown runtime %q: sim, runc or default", rt)
	}
	if extra := os.Getenv("VESSEL_BENCH_SERVER_ARGS"); extra != "" {
		args = append(args, strings.Fields(extra)...)
	}
	s := &server{t: t, dataDir: b.TempDir(), addr: freeAddr(t), extra: args}
	s.endpoint = "http://" + s.addr
	s.start()
	b.Cleanup(func() {
		stopAllB(s.ecsClient())
		s.kill(15)
		removeBridges(cidr)
		s.removeFirewall()
	})
	if out, stderr, code := s.vessel("k8s", "install", "--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1", "--webhook-port", webhookPort); code != 0 {
		b.Fatalf("install: %s%s", out, stderr)
	}
	if out, stderr, code := s.vessel("profile", "create", "bench", "--namespace", "bench", "--wait"); code != 0 {
		b.Fatalf("profile: %s%s", out, stderr)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		if _, err := cs.CoreV1().ServiceAccounts("bench").Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no default service account in namespace bench")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Warm the image cache with one pod, as a host that ran the image
	// before would be.
	running := watchRunning(b, cs)
	createPods(b, cs, img, "warm", 1)
	running.wait(b, []string{"warm-0"}, 5*time.Minute)
	if err := cs.CoreV1().Pods("bench").Delete(ctx, "warm-0", metav1.DeleteOptions{}); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	created := createPods(b, cs, img, "pod", n)
	names := make([]string, 0, n)
	for name := range created {
		names = append(names, name)
	}
	at := running.wait(b, names, 15*time.Minute)
	b.StopTimer()

	var lat []time.Duration
	for name, t0 := range created {
		lat = append(lat, at[name].Sub(t0))
	}
	taskLat := podTaskLatencies(b, s, n)
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	t50, t99 := percentile(taskLat, 50), percentile(taskLat, 99)
	label := rt
	if rt == "default" {
		label = "default (" + hostDefaultRuntime(s.log.String()) + ")"
	}
	b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p99.Milliseconds()), "p99-ms")
	fmt.Printf("pods %d on %s: creation→Running p50 %s p99 %s; their tasks created→RUNNING p50 %s p99 %s; "+
		"Kubernetes path × %.2f (p50); anchors: EKS Fargate 30–60 s per pod, Kubernetes SLO p99 ≤ 5 s\n",
		n, label, p50.Round(time.Millisecond), p99.Round(time.Millisecond), t50.Round(time.Millisecond),
		t99.Round(time.Millisecond), float64(p50)/float64(max(t50, time.Millisecond)))
	cs.CoreV1().Namespaces().Delete(ctx, "bench", metav1.DeleteOptions{})
	if path := os.Getenv("VESSEL_BENCH_SERVER_LOG"); path != "" {
		os.WriteFile(path, s.log.Bytes(), 0o644)
	}
}

// hostDefaultRuntime reads the host's default runtime from the server's
// start-up line, whose last "default: " names it (an emulated
// micro-VM's line says it is "not the default: ...").
func hostDefaultRuntime(log string) string {
	i := strings.LastIndex(log, "default: ")
	if i < 0 {
		return "?"
	}
	rest := log[i+len("default: "):]
	if j := strings.IndexAny(rest, "\n;"); j >= 0 {
		rest = rest[:j]
	}
	return strings.TrimSpace(rest)
}

func createPods(b *testing.B, cs kubernetes.Interface, img, prefix string, n int) map[string]time.Time {
	var mu sync.Mutex
	created := map[string]time.Time{}
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := fmt.Sprintf("%s-%d", prefix, i)
				grace := int64(1)
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bench"},
					Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{{
						Name: "main", Image: img, Command: []string{"sleep", "3600"},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")}},
					}}}}
				t0 := time.Now()
				if _, err := cs.CoreV1().Pods("bench").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
					b.Errorf("creating %s: %v", name, err)
					continue
				}
				mu.Lock()
				created[name] = t0
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return created
}

// runningWatch records when each pod of namespace bench is first seen
// Running.
type runningWatch struct {
	mu sync.Mutex
	at map[string]time.Time
}

func watchRunning(b *testing.B, cs kubernetes.Interface) *runningWatch {
	w := &runningWatch{at: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	wi, err := cs.CoreV1().Pods("bench").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for ev := range wi.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.Status.Phase != corev1.PodRunning {
				continue
			}
			w.mu.Lock()
			if _, seen := w.at[p.Name]; !seen {
				w.at[p.Name] = time.Now()
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *runningWatch) wait(b *testing.B, names []string, timeout time.Duration) map[string]time.Time {
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		missing := 0
		for _, n := range names {
			if _, ok := w.at[n]; !ok {
				missing++
			}
		}
		out := map[string]time.Time{}
		for k, v := range w.at {
			out[k] = v
		}
		w.mu.Unlock()
		if missing == 0 {
			return out
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d pods not Running after %s", missing, len(names), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// podTaskLatencies returns created → RUNNING of the bridge's tasks that
// run, from the control plane's timestamps.
func podTaskLatencies(b *testing.B, s *server, n int) []time.Duration {
	c := s.ecsClient()
	ctx := context.Background()
	var arns []string
	var next *string
	for {
		out, err := c.ListTasks(ctx, &ecs.ListTasksInput{StartedBy: aws.String("vessel-scheduler"), NextToken: next})
		if err != nil {
			b.Fatal(err)
		}
		arns = append(arns, out.TaskArns...)
		if next = out.NextToken; next == nil {
			break
		}
	}
	var lat []time.Duration
	for chunk := range slices.Chunk(arns, 100) {
		out, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: chunk})
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range out.Tasks {
			if t.StartedAt != nil && t.CreatedAt != nil && aws.ToString(t.LastStatus) == "RUNNING" {
				lat = append(lat, t.StartedAt.Sub(*t.CreatedAt))
			}
		}
	}
	if len(lat) < n {
		b.Logf("only %d of %d tasks report their start", len(lat), n)
	}
	return lat
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}
