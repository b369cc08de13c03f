package agent_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
)

// TestWarmPoolPrimedRunc: on runc, a task that takes a warm sandbox
// teaches the pool its containers; the refill primes the next warm
// sandbox with them (runc's container created, under the warm
// sandbox's name, its init waiting). The same task definition run again
// takes that sandbox and runs the primed container itself: its
// metadata URI, RuntimeID and runc's container are the warm sandbox's
// ID, and the metadata endpoint answers it with its own task. A task of
// another definition starts cold rather than take a sandbox primed for
// the first; the pool then primes for its definition. A graceful stop
// deletes the primed sandbox with everything it holds.
func TestWarmPoolPrimedRunc(t *testing.T) {
	var e *env
	var warmSeen []string
	// Registered first, so it runs after the env's cleanup (which stops
	// the tasks and the agent and deletes the pool).
	t.Cleanup(func() {
		if e == nil {
			return
		}
		lister := e.rt.(interface{ Leftovers(string) []string })
		for _, id := range warmSeen {
			if left := lister.Leftovers(id); len(left) > 0 {
				t.Errorf("warm sandbox %s left %q", id, left)
			}
		}
	})
	e = newEnvWith(t, time.Second, func(c *agent.Config) {
		c.WarmPools, c.WarmSubnet, c.WarmRetry = map[string]int{"runc": 1}, "t", 50*time.Millisecond
	})
	script := `echo "uri=$ECS_CONTAINER_METADATA_URI_V4"; wget -q -O - $ECS_CONTAINER_METADATA_URI_V4/task; echo; echo END; exec sleep 1000`
	readyWarm := func() string {
		t.Helper()
		var id string
		testutil.Eventually(t, 30*time.Second, func() error {
			id = ""
			infos, err := e.rt.List(context.Background())
			if err != nil {
				return err
			}
			for _, in := range infos {
				if in.Warm {
					id = in.ID
				}
			}
			if p := e.a.WarmPools(); len(p) != 1 || p[0].Ready != 1 || id == "" {
				return fmt.Errorf("pool %+v, warm sandbox %q; want one ready", p, id)
			}
			return nil
		})
		warmSeen = append(warmSeen, id)
		return id
	}

	first := readyWarm()
	a := e.run("", script, nil)
	e.waitFor(a, 60*time.Second, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning || t.Stopped() })
	if got := e.cp.get(a).Containers[0].RuntimeID; got != first+"-app" {
		t.Errorf("task %s in warm sandbox %s has RuntimeID %q, want %q", a, first, got, first+"-app")
	}
	if log := logOf(t, e, a); !strings.Contains(log, "uri=http://169.254.170.2/v4/"+first+"-app\n") ||
		!strings.Contains(log, `"TaskARN":"arn:aws:ecs:us-east-1:000000000000:task/default/`+a+`"`) {
		t.Errorf("task %s (not primed) did not read its metadata by its warm sandbox's ID; its log:\n%s", a, log)
	}

	// The refill primes its replacement with a's containers.
	primed := readyWarm()
	testutil.Eventually(t, 30*time.Second, func() error {
		if st := runcStatus(e, primed+"-app"); st != "created" {
			return fmt.Errorf("warm sandbox %s's container is %q in runc; want created (primed)", primed, st)
		}
		return nil
	})
	if p := e.a.WarmPools()[0]; p.MemoryMiB < 1+13 {
		t.Errorf("pool %+v counts %d MiB for a primed sandbox; want its idle memory and its primed container's", p, p.MemoryMiB)
	}
	b := e.run("", script, nil)
	e.waitFor(b, 60*time.Second, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning || t.Stopped() })
	if got := e.cp.get(b).Containers[0].RuntimeID; got != primed+"-app" {
		t.Errorf("task %s has RuntimeID %q, want the primed container's %q", b, got, primed+"-app")
	}
	if st, own := runcStatus(e, primed+"-app"), runcStatus(e, b+"-app"); st != "running" || own != "" {
		t.Errorf("runc has %s-app %q and %s-app %q; want the primed container running and none of the task's own", primed, st, b, own)
	}
	if log := logOf(t, e, b); !strings.Contains(log, "uri=http://169.254.170.2/v4/"+primed+"-app\n") ||
		!strings.Contains(log, `"TaskARN":"arn:aws:ecs:us-east-1:000000000000:task/default/`+b+`"`) {
		t.Errorf("the primed task %s did not read its own metadata; its log:\n%s", b, log)
	}

	// A task of another definition does not take a sandbox primed for
	// b's: it starts cold and teaches the pool its own, and the refill
	// replaces the sandbox primed for b's with one primed for it.
	stale := readyWarm()
	testutil.Eventually(t, 30*time.Second, func() error {
		if st := runcStatus(e, stale+"-app"); st != "created" {
			return fmt.Errorf("warm sandbox %s's container is %q; want created (primed)", stale, st)
		}
		return nil
	})
	other := `echo "I am the other one"; echo END; exec sleep 1000`
	c := e.run("", other, nil)
	e.waitFor(c, 60*time.Second, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning || t.Stopped() })
	if log := logOf(t, e, c); !strings.Contains(log, "I am the other one") || strings.Contains(log, "uri=") {
		t.Errorf("task %s of another definition ran %q; want its own container", c, log)
	}
	if got := e.cp.get(c).Containers[0].RuntimeID; got != c+"-app" || runcStatus(e, c+"-app") != "running" {
		t.Errorf("task %s of another definition has RuntimeID %q (runc: %q); want a cold start's %q", c, got, runcStatus(e, c+"-app"), c+"-app")
	}
	if p := e.a.WarmPools()[0]; p.Hits != 2 || p.Misses != 1 {
		t.Errorf("pool %+v; want 2 hits and 1 miss", p)
	}
	var fresh string
	testutil.Eventually(t, 30*time.Second, func() error {
		if st := runcStatus(e, stale+"-app"); st != "" {
			return fmt.Errorf("the sandbox primed for b's definition is still there (%q)", st)
		}
		fresh = readyWarm()
		if st := runcStatus(e, fresh+"-app"); fresh == stale || st != "created" {
			return fmt.Errorf("warm sandbox %s's container is %q; want one primed for c's definition", fresh, st)
		}
		return nil
	})
	d := e.run("", other, nil)
	e.waitFor(d, 60*time.Second, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning || t.Stopped() })
	if got := e.cp.get(d).Containers[0].RuntimeID; got != fresh+"-app" || !strings.Contains(logOf(t, e, d), "I am the other one") {
		t.Errorf("task %s of c's definition has RuntimeID %q; want the container primed for it, %q", d, got, fresh+"-app")
	}
	readyWarm() // primed for c's definition too; the cleanup deletes it
	if p := e.a.WarmPools()[0]; p.Primed != 1 || p.PrimedHits != 2 || p.Hits != 3 || p.Misses != 1 {
		t.Errorf("pool %+v; want 1 primed sandbox ready, 3 hits of which 2 primed, 1 miss", p)
	}
}

// logOf waits for task id's log to say END and returns it.
func logOf(t *testing.T, e *env, id string) string {
	t.Helper()
	var b strings.Builder
	testutil.Eventually(t, 60*time.Second, func() error {
		b.Reset()
		err := e.a.Logs(context.Background(), id, agentproto.LogOptions{}, func(l agentproto.LogLine) error {
			b.WriteString(l.Text + "\n")
			return nil
		})
		if err != nil || !strings.Contains(b.String(), "END") {
			return fmt.Errorf("task %s has not finished its script (%v); its log:\n%s", id, err, b.String())
		}
		return nil
	})
	return b.String()
}

// runcStatus is runc's status of container cid of e's runtime, "" when
// runc does not know it.
func runcStatus(e *env, cid string) string {
	out, err := exec.Command("runc", "--root", filepath.Join(e.dir, "runc", "runc-root"), "state", cid).Output()
	if err != nil {
		return ""
	}
	_, rest, _ := strings.Cut(string(out), `"status": "`)
	st, _, _ := strings.Cut(rest, `"`)
	return st
}

// TestWarmPoolPrimedTwoDefinitions: a pool of three primes for the last
// two task definitions it learnt, one sandbox each, and keeps the third
// unprimed: tasks of both definitions, interleaved, take sandboxes
// primed for them.
func TestWarmPoolPrimedTwoDefinitions(t *testing.T) {
	e := newEnvWith(t, time.Second, func(c *agent.Config) {
		c.WarmPools, c.WarmSubnet, c.WarmRetry = map[string]int{"runc": 3}, "t", 50*time.Millisecond
	})
	pool := func(ready, primed int) agentproto.WarmPool {
		t.Helper()
		var p agentproto.WarmPool
		testutil.Eventually(t, 30*time.Second, func() error {
			if p = e.a.WarmPools()[0]; p.Ready != ready || p.Primed != primed {
				return fmt.Errorf("pool %+v; want %d ready, %d of them primed", p, ready, primed)
			}
			return nil
		})
		return p
	}
	running := func(id string) {
		t.Helper()
		e.waitFor(id, 60*time.Second, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning || t.Stopped() })
	}
	pool(3, 0)
	a, b := `echo A; exec sleep 1000`, `echo B; exec sleep 1000`
	running(e.run("", a, nil))
	pool(3, 1)
	running(e.run("", b, nil))
	pool(3, 2)
	for i, script := range []string{a, b, a, b} {
		id := e.run("", script, nil)
		running(id)
		if st := runcStatus(e, e.cp.get(id).Containers[0].RuntimeID); !strings.HasPrefix(e.cp.get(id).Containers[0].RuntimeID, agent.WarmIDPrefix) || st != "running" {
			t.Errorf("task %d (%s) runs container %s (%q)", i, id, e.cp.get(id).Containers[0].RuntimeID, st)
		}
		p := pool(3, 2)
		if p.PrimedHits != int64(i+1) || p.Misses != 0 {
			t.Fatalf("after task %d: pool %+v; want %d primed hits, no miss", i, p, i+1)
		}
	}
}

// TestWarmPoolPrimedAdopted: an agent that restarts after a crash adopts
// a primed warm sandbox, counts its primed container's memory in the
// pool, and a task of the definition it was primed for runs that
// container.
func TestWarmPoolPrimedAdopted(t *testing.T) {
	e := newEnvWith(t, time.Second, func(c *agent.Config) {
		c.WarmPools, c.WarmSubnet, c.WarmRetry = map[string]int{"runc": 1}, "t", 50*time.Millisecond
	})
	script := `echo "uri=$ECS_CONTAINER_METADATA_URI_V4"; echo END; exec sleep 1000`
	testutil.Eventually(t, 30*time.Second, func() error {
		if p := e.a.WarmPools(); len(p) != 1 || p[0].Ready != 1 {
			return fmt.Errorf("pool %+v; want one ready", p)
		}
		return nil
	})
	a := e.run("", script, nil) // takes it; the refill primes the next for its definition
	e.waitFor(a, 60*time.Second, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning || t.Stopped() })
	var primed string
	var idle int64
	testutil.Eventually(t, 30*time.Second, func() error {
		infos, err := e.rt.List(context.Background())
		if err != nil {
			return err
		}
		primed = ""
		for _, in := range infos {
			if in.Warm && slices.Equal(in.Primed, []string{"app"}) {
				primed = in.ID
			}
		}
		p := e.a.WarmPools()
		if len(p) != 1 || p[0].Primed != 1 || primed == "" || runcStatus(e, primed+"-app") != "created" {
			return fmt.Errorf("pool %+v, primed warm sandbox %q; want one primed for a's definition", p, primed)
		}
		idle = p[0].MemoryMiB - runc.PrimedContainerMemoryMiB
		return nil
	})

	e.restart()
	testutil.Eventually(t, 30*time.Second, func() error {
		p := e.a.WarmPools()
		if len(p) != 1 || p[0].Ready != 1 {
			return fmt.Errorf("pool %+v after the restart; want the primed sandbox adopted", p)
		}
		if p[0].MemoryMiB != idle+runc.PrimedContainerMemoryMiB {
			return fmt.Errorf("pool %+v after the restart counts %d MiB; want %d, its primed container's memory included",
				p[0], p[0].MemoryMiB, idle+runc.PrimedContainerMemoryMiB)
		}
		return nil
	})
	b := e.run("", script, nil)
	e.waitFor(b, 60*time.Second, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning || t.Stopped() })
	if got := e.cp.get(b).Containers[0].RuntimeID; got != primed+"-app" || runcStatus(e, primed+"-app") != "running" {
		t.Errorf("task %s after the restart has RuntimeID %q (runc: %q); want the adopted primed container %q running",
			b, got, runcStatus(e, primed+"-app"), primed+"-app")
	}
	if log := logOf(t, e, b); !strings.Contains(log, "uri=http://169.254.170.2/v4/"+primed+"-app\n") {
		t.Errorf("task %s in the adopted primed sandbox logged %q", b, log)
	}
}
