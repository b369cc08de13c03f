//go:build chaos

package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/vishvananda/netlink"
)

var (
	flagDuration = flag.Duration("chaos.duration", 2*time.Minute, "how long to inject faults (the final checks come after)")
	flagSeed     = flag.Uint64("chaos.seed", 0, "seed of the random choices (0: from the clock)")
	flagRuntimes = flag.String("chaos.runtimes", "runc,gvisor", "runtimes the agent offers and tasks use: runc, gvisor, microvm")
	flagVessel   = flag.String("chaos.vessel", "", "the vessel binary (vessel-guest next to it for micro-VMs)")
	flagWork     = flag.String("chaos.workdir", "", "directory for the loop file, its mount and the logs (default: a new temporary one)")
	flagReport   = flag.String("chaos.report", "", "file the summary is written to, as markdown")
	flagPods     = flag.Bool("chaos.pods", false, "also run pods through the Kubernetes bridge (a real kube-apiserver and etcd)")
)

const (
	hostTimeout = time.Minute
	// settleBound is how long the system may take to recover from a fault.
	settleBound = 3 * time.Minute
	// stuckBound is how long a task may stay in a state on its way.
	stuckBound  = 3 * time.Minute
	serviceName = "web"
	serviceSize = 3
	maxLong     = 4
)

// Fault kinds.
const (
	fServer   = "kill-server"
	fAgent    = "kill-agent"
	fConmon   = "kill-conmon"
	fRunsc    = "kill-runsc"
	fQEMU     = "kill-qemu"
	fTaskProc = "kill-task-process"
	fDisk     = "fill-disk"
	fCut      = "cut-agent-link"
	// fAgentStart marks the tasks a killed agent was starting: their start
	// may fail (TaskFailedToStart).
	fAgentStart = "agent-killed-while-starting"
)

// rec is what the run knows of one task it made or saw.
type rec struct {
	arn, id, kind, runtime string
	wantCode               int           // exit tasks: the code their command exits with
	sleep                  time.Duration // exit tasks: how long they run first
	created                time.Time
	stopAsked              bool
	touched                []string // faults aimed at this task, or that could fail its start or its exit
	last, desired          string
	since                  time.Time // when last/desired were first seen as they are
	running                time.Time // when first seen RUNNING
	task                   *ecstypes.Task
	missing                bool
	pod                    string // the pod's name, for a pod's task
}

// podRec is a pod the run made.
type podRec struct {
	kind, runtime string // kind: pod-exit or pod-long
	wantCode      int
	sleep         time.Duration
	created       time.Time
	deleted       bool
	hasTask       bool
	touched       []string // faults that came before its task was seen
}

type chaos struct {
	t    *testing.T
	in   *instance
	c    *ecs.Client
	rng  *rand.Rand
	rngM sync.Mutex

	mu         sync.Mutex
	recs       map[string]*rec // by ARN
	diskActive bool
	violations []string
	seen       map[string]bool // violations already reported, by key
	faults     map[string]int
	recovery   map[string][]time.Duration
	runErrors  int
	pods       *pods
	podRecs    map[string]*podRec
	podSeq     int
	logf       func(format string, args ...any)
}

func (ch *chaos) rand(n int) int {
	ch.rngM.Lock()
	defer ch.rngM.Unlock()
	return ch.rng.IntN(n)
}

func (ch *chaos) between(a, b time.Duration) time.Duration {
	return a + time.Duration(ch.rand(int(b-a)/int(time.Millisecond)+1))*time.Millisecond
}

func (ch *chaos) violate(key, format string, args ...any) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.seen[key] {
		return
	}
	ch.seen[key] = true
	msg := fmt.Sprintf(format, args...)
	ch.violations = append(ch.violations, msg)
	ch.logf("VIOLATION: %s", msg)
}

func TestChaos(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the chaos run needs root (sandboxes, loop devices, mounts); run scripts/chaos as root")
	}
	if *flagVessel == "" {
		t.Fatal("-chaos.vessel is required; scripts/chaos builds bin/vessel and passes it")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano() % 1_000_000)
	}
	runtimes := strings.Split(*flagRuntimes, ",")
	work := *flagWork
	if work == "" {
		work = t.TempDir()
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Printf("[%7.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	logf("seed %d, duration %s, runtimes %s, work directory %s", seed, *flagDuration, strings.Join(runtimes, ","), work)

	in := newInstance(t, *flagVessel, work, runtimes)
	in.prepareImage()
	var pc *pods
	if *flagPods {
		pc = startCluster(t, in)
	}
	if err := in.startServer(); err != nil {
		t.Fatal(err)
	}
	in.readKeys()
	var err error
	if in.proxy, err = newProxy(in.addr); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: network after the processes.
	t.Cleanup(in.removeNetwork)
	t.Cleanup(in.proxy.close)
	t.Cleanup(func() { in.stopServer(syscall.SIGTERM) })
	t.Cleanup(func() { in.stopAgent(syscall.SIGTERM) })
	t.Cleanup(func() { killLeftovers(t, in) })
	if err := in.startAgent(); err != nil {
		t.Fatal(err)
	}
	ch := &chaos{t: t, in: in, c: in.ecs(), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		recs: map[string]*rec{}, seen: map[string]bool{}, faults: map[string]int{}, recovery: map[string][]time.Duration{}, logf: logf,
		pods: pc, podRecs: map[string]*podRec{}}
	if pc != nil {
		pc.install(t, in)
		logf("Kubernetes bridge installed; pods go to namespace %s", podNamespace)
	}
	ch.setUp(ctx)

	// Faults until the duration is over.
	deadline := time.Now().Add(*flagDuration)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		wctx, stopWork := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); ch.workload(wctx) }()
		sleepCtx(ctx, ch.between(5*time.Second, 15*time.Second))
		kind := ch.inject(ctx)
		stopWork()
		wg.Wait()
		if ctx.Err() != nil {
			break
		}
		d, ok := ch.settle(ctx, kind)
		if ok {
			ch.mu.Lock()
			ch.recovery[kind] = append(ch.recovery[kind], d)
			ch.mu.Unlock()
			logf("%s: recovered in %.1fs", kind, d.Seconds())
		}
		ch.checkRecords(false)
	}
	// The end: stop everything, check every task ended, then that nothing
	// was left behind.
	ch.finish(context.Background())
	leaks := ch.leaks()
	for _, l := range leaks {
		ch.violate("leak:"+l, "left behind: %s", l)
	}
	summary := ch.summary(seed, time.Since(start), runtimes)
	fmt.Println(summary)
	if *flagReport != "" {
		os.WriteFile(*flagReport, []byte(summary), 0o644)
	}
	if n := len(ch.violations); n > 0 {
		t.Errorf("%d invariant violations:\n%s\nserver log: %s, agent log: %s", n, strings.Join(ch.violations, "\n"),
			in.serverLg.Name(), in.agentLg.Name())
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// setUp registers the task definitions and creates the service.
func (ch *chaos) setUp(ctx context.Context) {
	t := ch.t
	for _, rt := range ch.in.runtimes {
		for _, fam := range []string{"exit", "long"} {
			_, err := ch.c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(fam + "-" + rt),
				Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
				Tags: []ecstypes.Tag{{Key: aws.String("vessel:runtime"), Value: aws.String(rt)}},
				ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox:chaos"),
					Command: []string{"sleep", "3600"}, StopTimeout: aws.Int32(5)}}})
			if err != nil {
				t.Fatalf("registering %s-%s: %v", fam, rt, err)
			}
		}
	}
	_, err := ch.c.CreateService(ctx, &ecs.CreateServiceInput{ServiceName: aws.String(serviceName),
		TaskDefinition: aws.String("long-" + ch.in.runtimes[0]), DesiredCount: aws.Int32(serviceSize)})
	if err != nil {
		t.Fatalf("creating the service: %v", err)
	}
	d, ok := ch.settle(ctx, "start")
	if !ok {
		t.Fatalf("the service did not reach %d running tasks (see %s)", serviceSize, ch.in.agentLg.Name())
	}
	ch.logf("service %s: %d tasks running after %.1fs", serviceName, serviceSize, d.Seconds())
}

// workload runs standalone tasks and stops some, until ctx ends.
func (ch *chaos) workload(ctx context.Context) {
	for ctx.Err() == nil {
		if ch.pods != nil && ch.rand(3) == 0 {
			ch.podStep(ctx)
			sleepCtx(ctx, ch.between(1500*time.Millisecond, 4*time.Second))
			continue
		}
		switch n := ch.rand(10); {
		case n < 5:
			ch.runTask(ctx, "exit")
		case n < 8:
			if ch.countLong() < maxLong {
				ch.runTask(ctx, "long")
			} else {
				ch.stopOne(ctx)
			}
		default:
			ch.stopOne(ctx)
		}
		sleepCtx(ctx, ch.between(1500*time.Millisecond, 4*time.Second))
	}
}

func (ch *chaos) countLong() int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	n := 0
	for _, r := range ch.recs {
		if r.kind == "long" && !r.stopAsked && r.last != "STOPPED" {
			n++
		}
	}
	return n
}

var exitCodes = []int{0, 1, 2, 3, 42, 127}

func (ch *chaos) runTask(ctx context.Context, kind string) {
	rt := ch.in.runtimes[ch.rand(len(ch.in.runtimes))]
	r := &rec{kind: kind, runtime: rt}
	in := &ecs.RunTaskInput{TaskDefinition: aws.String(kind + "-" + rt)}
	if kind == "exit" {
		r.wantCode = exitCodes[ch.rand(len(exitCodes))]
		r.sleep = ch.between(time.Second, 8*time.Second)
		in.Overrides = &ecstypes.TaskOverride{ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String("app"),
			Command: []string{"sh", "-c", fmt.Sprintf("sleep %.1f; exit %d", r.sleep.Seconds(), r.wantCode)}}}}
	}
	// One clientToken for the call and all its retries, as a careful
	// client does: an answer lost to a fault is asked for again, and the
	// server answers with the task it made the first time.
	ch.mu.Lock()
	ch.podSeq++
	in.ClientToken = aws.String(fmt.Sprintf("chaos-%d-%d", time.Now().UnixNano(), ch.podSeq))
	ch.mu.Unlock()
	var out *ecs.RunTaskOutput
	var err error
	for deadline := time.Now().Add(2 * time.Minute); ; {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err = ch.c.RunTask(cctx, in)
		cancel()
		if err == nil || time.Now().After(deadline) || strings.Contains(err.Error(), "Exception:") && !strings.Contains(err.Error(), "ServerException") {
			break
		}
		ch.mu.Lock()
		ch.runErrors++
		ch.mu.Unlock()
		ch.logf("RunTask (retried with the same clientToken): %v", err)
		time.Sleep(2 * time.Second)
	}
	if err != nil || len(out.Tasks) != 1 {
		ch.logf("RunTask gave up: %v", err)
		return
	}
	r.arn = aws.ToString(out.Tasks[0].TaskArn)
	r.id = r.arn[strings.LastIndex(r.arn, "/")+1:]
	r.created = time.Now()
	r.since = r.created
	ch.mu.Lock()
	if ch.diskActive {
		r.touched = append(r.touched, fDisk)
	}
	ch.recs[r.arn] = r
	ch.mu.Unlock()
}

// stopOne stops a random long-running standalone task.
func (ch *chaos) stopOne(ctx context.Context) {
	ch.mu.Lock()
	var cands []*rec
	for _, r := range ch.recs {
		if r.kind == "long" && !r.stopAsked && r.last == "RUNNING" {
			cands = append(cands, r)
		}
	}
	ch.mu.Unlock()
	if len(cands) == 0 {
		return
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].arn < cands[j].arn })
	r := cands[ch.rand(len(cands))]
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := ch.c.StopTask(cctx, &ecs.StopTaskInput{Task: aws.String(r.arn), Reason: aws.String("chaos: stopped by the workload")}); err == nil {
		ch.mu.Lock()
		r.stopAsked = true
		ch.mu.Unlock()
	}
}

// touch marks a task as hit by a fault.
func (ch *chaos) touch(id, fault string) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, r := range ch.recs {
		if r.id == id {
			r.touched = append(r.touched, fault)
		}
	}
}

// taskOf finds which of our tasks a command line or cgroup belongs to.
func (ch *chaos) taskOf(s string) string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, r := range ch.recs {
		if r.id != "" && strings.Contains(s, r.id) {
			return r.id
		}
	}
	return ""
}

// inject picks a fault that can be made now and makes it.
func (ch *chaos) inject(ctx context.Context) string {
	kinds := []string{fServer, fAgent, fConmon, fTaskProc, fDisk, fCut}
	if slices.Contains(ch.in.runtimes, "gvisor") {
		kinds = append(kinds, fRunsc)
	}
	if slices.Contains(ch.in.runtimes, "microvm") {
		kinds = append(kinds, fQEMU)
	}
	for {
		kind := kinds[ch.rand(len(kinds))]
		if detail, ok := ch.make(ctx, kind); ok {
			ch.mu.Lock()
			ch.faults[kind]++
			ch.mu.Unlock()
			ch.logf("fault %s %s", kind, detail)
			return kind
		}
	}
}

func (ch *chaos) make(ctx context.Context, kind string) (string, bool) {
	in := ch.in
	switch kind {
	case fServer:
		in.stopServer(syscall.SIGKILL)
		sleepCtx(ctx, ch.between(500*time.Millisecond, 5*time.Second))
		if err := in.startServer(); err != nil {
			ch.violate("server-start", "the server did not come back after kill -9: %v", err)
		}
		return "", true
	case fAgent:
		ch.mu.Lock()
		for _, r := range ch.recs {
			if r.last != "STOPPED" && r.last != "RUNNING" && r.desired != "STOPPED" {
				r.touched = append(r.touched, fAgentStart)
			}
		}
		for _, pr := range ch.podRecs {
			if !pr.hasTask {
				pr.touched = append(pr.touched, fAgentStart)
			}
		}
		ch.mu.Unlock()
		in.stopAgent(syscall.SIGKILL)
		sleepCtx(ctx, ch.between(500*time.Millisecond, 5*time.Second))
		if err := in.startAgent(); err != nil {
			ch.violate("agent-start", "the agent did not restart: %v", err)
		}
		return "", true
	case fCut:
		d := ch.between(3*time.Second, 20*time.Second)
		in.proxy.cut()
		sleepCtx(ctx, d)
		in.proxy.restore()
		return fmt.Sprintf("for %.1fs", d.Seconds()), true
	case fDisk:
		d := ch.between(3*time.Second, 15*time.Second)
		ch.mu.Lock()
		ch.diskActive = true
		for _, r := range ch.recs {
			if r.last != "STOPPED" && (r.last != "RUNNING" || r.kind == "exit" || r.kind == "pod-exit" || r.stopAsked) {
				r.touched = append(r.touched, fDisk)
			}
		}
		for _, pr := range ch.podRecs {
			if !pr.hasTask {
				pr.touched = append(pr.touched, fDisk)
			}
		}
		ch.mu.Unlock()
		undo, err := in.fillDisk()
		if err != nil {
			ch.logf("filling the disk: %v", err)
		}
		sleepCtx(ctx, d)
		undo()
		ch.mu.Lock()
		ch.diskActive = false
		ch.mu.Unlock()
		return fmt.Sprintf("for %.1fs", d.Seconds()), true
	case fConmon, fRunsc, fQEMU:
		var cands []process
		for _, p := range processesNaming(in.agent) {
			switch {
			case kind == fConmon && p.comm == "conmon",
				kind == fRunsc && p.comm != "conmon" && strings.Contains(p.cmd, "runsc") && strings.Contains(p.cmd, " boot "),
				kind == fQEMU && strings.HasPrefix(p.comm, "qemu-system"):
				if ch.taskOf(p.cmd) != "" {
					cands = append(cands, p)
				}
			}
		}
		if len(cands) == 0 {
			return "", false
		}
		p := cands[ch.rand(len(cands))]
		id := ch.taskOf(p.cmd)
		if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil {
			return "", false
		}
		ch.touch(id, kind)
		return fmt.Sprintf("pid %d (%s) of task %s", p.pid, p.comm, id), true
	case fTaskProc:
		// A container's own process: runc tasks (a gVisor task's processes
		// live inside its sandbox; killing runsc covers those).
		ch.mu.Lock()
		var ids []string
		for _, r := range ch.recs {
			// Long-running ones, whose process is the container's first.
			if r.runtime == "runc" && r.last == "RUNNING" && (r.kind == "long" || r.kind == "service" || r.kind == "pod-long") {
				ids = append(ids, r.id)
			}
		}
		ch.mu.Unlock()
		sort.Strings(ids)
		var cands []process
		var owners []string
		for _, id := range ids {
			for _, p := range cgroupProcs(id) {
				if p.comm != "conmon" && !strings.Contains(p.cmd, "runc") && p.comm != "" {
					cands = append(cands, p)
					owners = append(owners, id)
				}
			}
		}
		if len(cands) == 0 {
			return "", false
		}
		i := ch.rand(len(cands))
		if err := syscall.Kill(cands[i].pid, syscall.SIGKILL); err != nil {
			return "", false
		}
		ch.touch(owners[i], kind)
		return fmt.Sprintf("pid %d (%s) of task %s", cands[i].pid, cands[i].comm, owners[i]), true
	}
	return "", false
}

// observe refreshes every record from the control plane and finds the
// service's tasks. It returns the service's counts, or an error.
func (ch *chaos) observe(ctx context.Context) (running, desired int32, err error) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, ds := range []ecstypes.DesiredStatus{ecstypes.DesiredStatusRunning, ecstypes.DesiredStatusStopped} {
		p := ecs.NewListTasksPaginator(ch.c, &ecs.ListTasksInput{ServiceName: aws.String(serviceName), DesiredStatus: ds})
		for p.HasMorePages() {
			out, err := p.NextPage(cctx)
			if err != nil {
				return 0, 0, fmt.Errorf("ListTasks: %w", err)
			}
			ch.mu.Lock()
			for _, arn := range out.TaskArns {
				if ch.recs[arn] == nil {
					ch.recs[arn] = &rec{arn: arn, id: arn[strings.LastIndex(arn, "/")+1:], kind: "service",
						runtime: ch.in.runtimes[0], created: time.Now(), since: time.Now()}
					if ch.diskActive {
						ch.recs[arn].touched = append(ch.recs[arn].touched, fDisk)
					}
				}
			}
			ch.mu.Unlock()
		}
	}
	if ch.pods != nil {
		for _, ds := range []ecstypes.DesiredStatus{ecstypes.DesiredStatusRunning, ecstypes.DesiredStatusStopped} {
			p := ecs.NewListTasksPaginator(ch.c, &ecs.ListTasksInput{StartedBy: aws.String("vessel-scheduler"), DesiredStatus: ds})
			for p.HasMorePages() {
				out, err := p.NextPage(cctx)
				if err != nil {
					return 0, 0, fmt.Errorf("ListTasks: %w", err)
				}
				ch.mu.Lock()
				for _, arn := range out.TaskArns {
					if ch.recs[arn] == nil {
						ch.recs[arn] = &rec{arn: arn, id: arn[strings.LastIndex(arn, "/")+1:], kind: "pod",
							created: time.Now(), since: time.Now()}
						if ch.diskActive {
							ch.recs[arn].touched = append(ch.recs[arn].touched, fDisk)
						}
					}
				}
				ch.mu.Unlock()
			}
		}
	}
	ch.mu.Lock()
	var arns []string
	for arn := range ch.recs {
		arns = append(arns, arn)
	}
	ch.mu.Unlock()
	sort.Strings(arns)
	now := time.Now()
	for i := 0; i < len(arns); i += 100 {
		batch := arns[i:min(i+100, len(arns))]
		out, err := ch.c.DescribeTasks(cctx, &ecs.DescribeTasksInput{Tasks: batch, Include: []ecstypes.TaskField{ecstypes.TaskFieldTags}})
		if err != nil {
			return 0, 0, fmt.Errorf("DescribeTasks: %w", err)
		}
		ch.mu.Lock()
		for _, f := range out.Failures {
			if r := ch.recs[aws.ToString(f.Arn)]; r != nil {
				r.missing = true
			}
		}
		for j := range out.Tasks {
			tk := out.Tasks[j]
			r := ch.recs[aws.ToString(tk.TaskArn)]
			if r == nil {
				continue
			}
			r.missing = false
			r.task = &tk
			if r.kind == "pod" {
				for _, tg := range tk.Tags {
					if aws.ToString(tg.Key) == "vessel:pod-name" {
						r.pod = aws.ToString(tg.Value)
					}
				}
				if pr := ch.podRecs[r.pod]; pr != nil {
					r.kind, r.runtime, r.wantCode, r.sleep = pr.kind, pr.runtime, pr.wantCode, pr.sleep
					r.touched = append(r.touched, pr.touched...)
					pr.hasTask = true
				}
			}
			if pr := ch.podRecs[r.pod]; pr != nil && pr.deleted {
				r.stopAsked = true
			}
			last, des := aws.ToString(tk.LastStatus), aws.ToString(tk.DesiredStatus)
			if last != r.last || des != r.desired {
				r.last, r.desired, r.since = last, des, now
			}
			if last == "RUNNING" && r.running.IsZero() {
				r.running = now
			}
		}
		ch.mu.Unlock()
	}
	sv, err := ch.c.DescribeServices(cctx, &ecs.DescribeServicesInput{Services: []string{serviceName}})
	if err != nil {
		return 0, 0, fmt.Errorf("DescribeServices: %w", err)
	}
	if len(sv.Services) != 1 {
		return 0, 0, fmt.Errorf("DescribeServices: %d services, failures %v", len(sv.Services), sv.Failures)
	}
	return sv.Services[0].RunningCount, sv.Services[0].DesiredCount, nil
}

var transitional = []string{"PROVISIONING", "PENDING", "ACTIVATING", "DEACTIVATING", "STOPPING", "DEPROVISIONING"}

// unsettled says what still moves: nil once the service runs its desired
// count and no task is on its way anywhere.
func (ch *chaos) unsettled(running, desired int32) []string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var why []string
	svcRunning := 0
	for _, r := range ch.recs {
		switch {
		case r.missing:
			why = append(why, "task "+r.id+" missing")
		case r.last == "STOPPED":
		case slices.Contains(transitional, r.last) || r.desired == "STOPPED":
			why = append(why, fmt.Sprintf("task %s %s→%s", r.id, r.last, r.desired))
		case (r.kind == "exit" || r.kind == "pod-exit") && r.last == "RUNNING" && time.Since(r.running) > r.sleep+30*time.Second:
			why = append(why, fmt.Sprintf("exit task %s still RUNNING %s after it started", r.id, time.Since(r.running).Round(time.Second)))
		case slices.ContainsFunc(r.touched, func(f string) bool { return f == fConmon || f == fRunsc || f == fQEMU || f == fTaskProc }):
			// Its sandbox or first process was killed: it must end.
			why = append(why, fmt.Sprintf("task %s hit by %v still %s", r.id, r.touched, r.last))
		case r.kind == "service" && r.last == "RUNNING":
			svcRunning++
		}
	}
	for name, pr := range ch.podRecs {
		if !pr.hasTask && !pr.deleted {
			why = append(why, "pod "+name+" has no task")
		}
	}
	if running != desired || svcRunning != int(desired) {
		why = append(why, fmt.Sprintf("service %d running (%d seen), desired %d", running, svcRunning, desired))
	}
	sort.Strings(why)
	return why
}

// settle waits, bounded, until nothing moves, and says how long it took.
func (ch *chaos) settle(ctx context.Context, kind string) (time.Duration, bool) {
	start := time.Now()
	var why []string
	for time.Since(start) < settleBound && ctx.Err() == nil {
		running, desired, err := ch.observe(ctx)
		if err != nil {
			why = []string{err.Error()}
		} else if why = ch.unsettled(running, desired); len(why) == 0 {
			return time.Since(start), true
		}
		ch.checkStuck()
		sleepCtx(ctx, time.Second)
	}
	if ctx.Err() == nil {
		if len(why) > 5 {
			why = append(why[:5], fmt.Sprintf("and %d more", len(why)-5))
		}
		ch.violate(fmt.Sprintf("settle:%s:%s", kind, start), "not recovered %s after %s: %s", settleBound, kind, strings.Join(why, "; "))
	}
	return 0, false
}

// checkStuck reports tasks that have been on their way for too long.
func (ch *chaos) checkStuck() {
	ch.mu.Lock()
	var stuck []*rec
	for _, r := range ch.recs {
		if r.last != "" && r.last != "STOPPED" && (slices.Contains(transitional, r.last) || r.desired == "STOPPED") &&
			time.Since(r.since) > stuckBound {
			stuck = append(stuck, r)
		}
	}
	ch.mu.Unlock()
	for _, r := range stuck {
		ch.violate("stuck:"+r.id+r.last+r.desired, "task %s (%s, %s) stuck %s→%s for %s (faults on it: %v)",
			r.id, r.kind, r.runtime, r.last, r.desired, time.Since(r.since).Round(time.Second), r.touched)
	}
}

// checkRecords checks every task's record: still there, and if stopped,
// stopped as what happened to it calls for.
func (ch *chaos) checkRecords(final bool) {
	ch.mu.Lock()
	recs := make([]*rec, 0, len(ch.recs))
	for _, r := range ch.recs {
		recs = append(recs, r)
	}
	ch.mu.Unlock()
	for _, r := range recs {
		ch.mu.Lock()
		missing, tk, touched, stopAsked := r.missing, r.task, slices.Clone(r.touched), r.stopAsked
		ch.mu.Unlock()
		if missing {
			ch.violate("lost:"+r.id, "task %s (%s) lost: DescribeTasks no longer finds it", r.id, r.kind)
			continue
		}
		if tk == nil || aws.ToString(tk.LastStatus) != "STOPPED" {
			if final && tk != nil {
				ch.violate("notstopped:"+r.id, "task %s (%s) is %s at the end, after every task was stopped", r.id, r.kind, aws.ToString(tk.LastStatus))
			}
			continue
		}
		if msg := verdict(r.kind, r.wantCode, stopAsked, touched, tk); msg != "" {
			ch.violate("code:"+r.id, "task %s (%s, %s, faults on it %v, stop asked %v): %s", r.id, r.kind, r.runtime, touched, stopAsked, msg)
		}
	}
}

// verdict says what is wrong with how a stopped task ended, or "". The
// rules are those of docs/reliability.md.
func verdict(kind string, want int, stopAsked bool, touched []string, tk *ecstypes.Task) string {
	code := string(tk.StopCode)
	reason := aws.ToString(tk.StoppedReason)
	var exit *int32
	if len(tk.Containers) > 0 {
		exit = tk.Containers[0].ExitCode
	}
	exitStr := "none"
	if exit != nil {
		exitStr = fmt.Sprint(*exit)
	}
	got := fmt.Sprintf("stopCode %q, exit code %s, reason %q", code, exitStr, reason)
	if code == "" || reason == "" {
		return "stopped without a stop code or reason: " + got
	}
	startFault := slices.Contains(touched, fDisk) || slices.Contains(touched, fAgentStart)
	procFault := slices.ContainsFunc(touched, func(f string) bool {
		return f == fConmon || f == fRunsc || f == fQEMU || f == fTaskProc
	})
	// A killed monitor (conmon, a micro-VM's QEMU) takes the exit code
	// with it: the agent says so instead of making one up.
	monitorFault := slices.ContainsFunc(touched, func(f string) bool { return f == fConmon || f == fRunsc || f == fQEMU })
	if code == "EssentialContainerExited" && exit == nil &&
		!(monitorFault && strings.HasPrefix(reason, "CannotInspectContainerError")) {
		return "EssentialContainerExited without the container's exit code: " + got
	}
	allowed := map[string]bool{}
	switch kind {
	case "exit", "pod-exit":
		allowed["EssentialContainerExited"] = true
		if stopAsked {
			allowed["UserInitiated"] = true
		}
		if code == "EssentialContainerExited" && !startFault && !procFault && exit != nil && int(*exit) != want {
			return fmt.Sprintf("exited by itself with %d, recorded as %s", want, got)
		}
	case "orphan":
		allowed["UserInitiated"] = true
		allowed["EssentialContainerExited"] = true
	case "long", "pod-long":
		if stopAsked {
			allowed["UserInitiated"] = true
		}
		if procFault {
			allowed["EssentialContainerExited"] = true
		}
	case "service":
		allowed["ServiceSchedulerInitiated"] = true
		if stopAsked {
			allowed["UserInitiated"] = true
		}
		if procFault {
			allowed["EssentialContainerExited"] = true
		}
	}
	if startFault || procFault {
		allowed["TaskFailedToStart"] = true
	}
	if !allowed[code] {
		var want []string
		for c := range allowed {
			want = append(want, c)
		}
		sort.Strings(want)
		return fmt.Sprintf("%s, want one of %v", got, want)
	}
	return ""
}

// finish scales the service to zero, deletes it, stops every task and
// checks that all ended.
func (ch *chaos) finish(ctx context.Context) {
	ch.logf("finishing: settling, then stopping the service and every task")
	ch.settle(ctx, "end")
	ch.checkRecords(false)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, err := ch.c.DeleteService(cctx, &ecs.DeleteServiceInput{Service: aws.String(serviceName), Force: aws.Bool(true)}); err != nil {
		ch.violate("delete-service", "DeleteService: %v", err)
	}
	ch.mu.Lock()
	var live []*rec
	for _, r := range ch.recs {
		if r.last != "STOPPED" && r.kind != "service" {
			live = append(live, r)
		}
	}
	ch.mu.Unlock()
	if ch.pods != nil {
		if out, err := ch.pods.kubectl(cctx, nil, "-n", podNamespace, "delete", "pods", "--all", "--wait=false"); err != nil {
			ch.violate("delete-pods", "deleting the pods: %v: %s", err, out)
		}
		ch.mu.Lock()
		for _, pr := range ch.podRecs {
			pr.deleted = true
		}
		for _, r := range ch.recs {
			if r.pod != "" {
				r.stopAsked = true
			}
		}
		ch.mu.Unlock()
	}
	for _, r := range live {
		if r.pod != "" || r.kind == "pod" {
			continue
		}
		if _, err := ch.c.StopTask(cctx, &ecs.StopTaskInput{Task: aws.String(r.arn), Reason: aws.String("chaos: the run ends")}); err == nil {
			ch.mu.Lock()
			r.stopAsked = true
			ch.mu.Unlock()
		}
	}
	// Tasks the run never heard of (a RunTask whose answer was lost) are
	// stopped too, and reported.
	for _, ds := range []ecstypes.DesiredStatus{ecstypes.DesiredStatusRunning, ecstypes.DesiredStatusStopped} {
		p := ecs.NewListTasksPaginator(ch.c, &ecs.ListTasksInput{DesiredStatus: ds})
		for p.HasMorePages() {
			page, err := p.NextPage(cctx)
			if err != nil {
				break
			}
			for _, arn := range page.TaskArns {
				ch.mu.Lock()
				known := ch.recs[arn] != nil
				ch.mu.Unlock()
				if known {
					continue
				}
				id := arn[strings.LastIndex(arn, "/")+1:]
				ch.violate("orphan:"+id, "task %s exists but no RunTask answered with it (an answer lost to a fault)", id)
				ch.c.StopTask(cctx, &ecs.StopTaskInput{Task: aws.String(arn), Reason: aws.String("chaos: the run ends")})
				ch.mu.Lock()
				ch.recs[arn] = &rec{arn: arn, id: id, kind: "orphan", stopAsked: true, created: time.Now(), since: time.Now()}
				ch.mu.Unlock()
			}
		}
	}
	// The service's tasks stop with ServiceSchedulerInitiated.
	for cctx.Err() == nil {
		err := func() error {
			_, _, err := ch.observe(cctx)
			return err
		}()
		ch.mu.Lock()
		busy := 0
		for _, r := range ch.recs {
			if r.last != "STOPPED" {
				busy++
			}
		}
		ch.mu.Unlock()
		if err == nil && busy == 0 {
			break
		}
		sleepCtx(cctx, time.Second)
	}
	ch.checkStuck()
	ch.checkRecords(true)
	ch.logf("every task stopped; stopping the agent and the server")
	ch.in.stopAgent(syscall.SIGTERM)
	ch.in.stopServer(syscall.SIGTERM)
}

// leaks lists what the run's sandboxes left on the host once every task
// stopped and the agent and server exited.
func (ch *chaos) leaks() []string {
	in := ch.in
	var out []string
	for _, p := range processesNaming(in.agent) {
		out = append(out, fmt.Sprintf("process %d %s: %.120s", p.pid, p.comm, p.cmd))
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && strings.HasPrefix(f[4], in.mnt+"/") {
				out = append(out, "mount "+f[4])
			}
		}
	}
	entries, _ := os.ReadDir(filepath.Join(in.agent, "network", "netns"))
	for _, e := range entries {
		out = append(out, "network namespace "+e.Name())
	}
	ch.mu.Lock()
	ids := map[string]bool{}
	for _, r := range ch.recs {
		ids[r.id] = true
	}
	ch.mu.Unlock()
	cgRoots, _ := filepath.Glob("/sys/fs/cgroup/*/vessel")
	cgRoots = append(cgRoots, "/sys/fs/cgroup/vessel")
	for _, root := range cgRoots {
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if e.IsDir() && ids[e.Name()] {
				out = append(out, "cgroup "+filepath.Join(root, e.Name()))
			}
		}
	}
	// Exit directories of the agent's runtimes (toolkit.DefaultExitRoot).
	rtDirs, _ := filepath.Glob(filepath.Join(in.agent, "sandboxes", "*"))
	for _, d := range rtDirs {
		h := sha256.Sum256([]byte(d))
		root := filepath.Join("/run/vessel/exits", hex.EncodeToString(h[:])[:12])
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			out = append(out, "exit directory "+filepath.Join(root, e.Name()))
		}
	}
	// Veths of our subnet's bridge.
	links, _ := netlink.LinkList()
	bridges := map[int]bool{}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "vsl-") {
			addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
			for _, a := range addrs {
				if strings.HasPrefix(a.IPNet.String(), strings.TrimSuffix(in.subnet, "0/24")) {
					bridges[l.Attrs().Index] = true
				}
			}
		}
	}
	for _, l := range links {
		if l.Type() == "veth" && bridges[l.Attrs().MasterIndex] {
			out = append(out, "veth "+l.Attrs().Name)
		}
	}
	// Loop devices whose backing file lives in the data directory (the
	// writable layers of runc and gVisor tasks).
	if b, err := runOut("losetup", "-a"); err == nil {
		for _, line := range strings.Split(b, "\n") {
			if strings.Contains(line, in.mnt+"/") {
				out = append(out, "loop device "+line)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(in.agent, "network", "leases.json")); err == nil {
		var v struct {
			Leases map[string]json.RawMessage `json:"leases"`
		}
		if json.Unmarshal(b, &v) == nil {
			for k := range v.Leases {
				out = append(out, "IP lease "+k)
			}
		}
	}
	// The firewall's per-task rules: none may name a task's veth.
	if b, err := runOut("nft", "list", "ruleset"); err == nil {
		table := ""
		for _, line := range strings.Split(b, "\n") {
			if strings.HasPrefix(line, "table ") {
				table = line
			}
			for id := range ids {
				if len(id) > 8 && strings.Contains(line, id[:8]) {
					out = append(out, fmt.Sprintf("nftables %s: %s", table, strings.TrimSpace(line)))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func runOut(name string, args ...string) (string, error) {
	b, err := exec.Command(name, args...).Output()
	return string(b), err
}

// killLeftovers kills, at the very end, any process still naming the
// agent's data directory (conmon, runsc, QEMU, monitors), so a failed run
// leaves nothing running.
func killLeftovers(t *testing.T, in *instance) {
	for _, p := range processesNaming(in.work) {
		t.Logf("killing leftover process %d %s", p.pid, p.comm)
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	// A container's own processes do not name the directory: find them
	// by the cgroups of the sandboxes the agent left.
	dirs, _ := filepath.Glob(filepath.Join(in.agent, "sandboxes", "*", "*"))
	for _, d := range dirs {
		for _, p := range cgroupProcs(filepath.Base(d)) {
			t.Logf("killing leftover process %d %s of sandbox %s", p.pid, p.comm, filepath.Base(d))
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p+0.5)]
}

// summary is the run's table, as markdown.
func (ch *chaos) summary(seed uint64, took time.Duration, runtimes []string) string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var b strings.Builder
	kinds := map[string]int{}
	for _, r := range ch.recs {
		kinds[r.kind]++
	}
	fmt.Fprintf(&b, "Chaos run %s: seed %d, fault injection for %s (%s in all), runtimes %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), seed, *flagDuration, took.Round(time.Second), strings.Join(runtimes, ","))
	fmt.Fprintf(&b, "Tasks: %d exit-with-a-code, %d long-running, %d of the service, %d of pods (%d exiting, %d long-running) (%d RunTask calls refused or unanswered during faults)\n\n",
		kinds["exit"], kinds["long"], kinds["service"], kinds["pod-exit"]+kinds["pod-long"]+kinds["pod"], kinds["pod-exit"], kinds["pod-long"], ch.runErrors)
	fmt.Fprintf(&b, "| fault | injected | recovered | recovery p50 | recovery max |\n|---|---|---|---|---|\n")
	var all []time.Duration
	total := 0
	names := []string{fServer, fAgent, fConmon, fRunsc, fQEMU, fTaskProc, fDisk, fCut}
	for _, k := range names {
		n := ch.faults[k]
		if n == 0 && (k == fQEMU && !slices.Contains(runtimes, "microvm") || k == fRunsc && !slices.Contains(runtimes, "gvisor")) {
			continue
		}
		ds := ch.recovery[k]
		all = append(all, ds...)
		total += n
		fmt.Fprintf(&b, "| %s | %d | %d | %.1f s | %.1f s |\n", k, n, len(ds), percentile(ds, 0.5).Seconds(), percentile(ds, 1).Seconds())
	}
	fmt.Fprintf(&b, "| all | %d | %d | %.1f s | %.1f s |\n\n", total, len(all), percentile(all, 0.5).Seconds(), percentile(all, 1).Seconds())
	fmt.Fprintf(&b, "Invariant violations: %d\n", len(ch.violations))
	for _, v := range ch.violations {
		fmt.Fprintf(&b, "- %s\n", v)
	}
	return b.String()
}

// podStep makes an exiting or a long-running pod, or deletes a long one.
func (ch *chaos) podStep(ctx context.Context) {
	ch.mu.Lock()
	var long []string
	for name, pr := range ch.podRecs {
		if pr.kind == "pod-long" && !pr.deleted && pr.hasTask {
			long = append(long, name)
		}
	}
	ch.podSeq++
	seq := ch.podSeq
	ch.mu.Unlock()
	sort.Strings(long)
	rt := ch.in.runtimes[ch.rand(len(ch.in.runtimes))]
	switch n := ch.rand(10); {
	case n < 5:
		pr := &podRec{kind: "pod-exit", runtime: rt, wantCode: exitCodes[ch.rand(len(exitCodes))],
			sleep: ch.between(time.Second, 8*time.Second), created: time.Now()}
		name := fmt.Sprintf("pe-c%d-%d", pr.wantCode, seq)
		if err := ch.pods.create(ctx, name, rt, fmt.Sprintf("sleep %.1f; exit %d", pr.sleep.Seconds(), pr.wantCode)); err != nil {
			ch.logf("%v", err)
			return
		}
		ch.mu.Lock()
		if ch.diskActive {
			pr.touched = append(pr.touched, fDisk)
		}
		ch.podRecs[name] = pr
		ch.mu.Unlock()
	case n < 8 && len(long) < 3:
		pr := &podRec{kind: "pod-long", runtime: rt, created: time.Now()}
		name := fmt.Sprintf("pl-%d", seq)
		if err := ch.pods.create(ctx, name, rt, "exec sleep 3600"); err != nil {
			ch.logf("%v", err)
			return
		}
		ch.mu.Lock()
		if ch.diskActive {
			pr.touched = append(pr.touched, fDisk)
		}
		ch.podRecs[name] = pr
		ch.mu.Unlock()
	case len(long) > 0:
		name := long[ch.rand(len(long))]
		if err := ch.pods.delete(ctx, name); err != nil {
			ch.logf("%v", err)
			return
		}
		ch.mu.Lock()
		ch.podRecs[name].deleted = true
		for _, r := range ch.recs {
			if r.pod == name {
				r.stopAsked = true
			}
		}
		ch.mu.Unlock()
	}
}
