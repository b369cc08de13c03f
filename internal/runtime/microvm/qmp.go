package microvm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"vessel.dev/vessel/internal/runtime/toolkit"
)

// qmpSocket is the VM's QMP socket in its directory: QEMU's own view of
// its devices, read when the guest does not answer (virtioQueues).
const qmpSocket = "qmp.sock"

// virtioQueues is what QEMU says of the VM's virtio-serial queues (the
// control channel's): for each, the ring indexes that tell whether the
// guest made buffers available that QEMU has not taken (shadow/last
// avail) and whether QEMU used buffers the guest was not told of (used,
// signalled); then the first vCPU's instruction pointer (EIP before the
// guest's kernel runs in 64 bits, RIP after), flags and HLT (halted,
// waiting for an interrupt), the instructions there, and its local
// APIC's timer and pending interrupts. It is for the error of a guest that did not answer, so it
// never fails: what it cannot get, it says.
func virtioQueues(dir string) string {
	c, err := net.DialTimeout("unix", filepath.Join(dir, qmpSocket), 2*time.Second)
	if err != nil {
		return fmt.Sprintf("(QMP: %v)", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	// call sends one command and returns its "return", skipping events.
	call := func(cmd string, args any) (json.RawMessage, error) {
		req := map[string]any{"execute": cmd}
		if args != nil {
			req["arguments"] = args
		}
		if err := json.NewEncoder(c).Encode(req); err != nil {
			return nil, err
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return nil, err
			}
			var resp struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if json.Unmarshal(line, &resp) != nil {
				continue
			}
			if resp.Error != nil {
				return nil, fmt.Errorf("%s: %s", cmd, resp.Error.Desc)
			}
			if resp.Return != nil {
				return resp.Return, nil
			}
		}
	}
	if _, err := r.ReadBytes('\n'); err != nil { // the greeting
		return fmt.Sprintf("(QMP: %v)", err)
	}
	if _, err := call("qmp_capabilities", nil); err != nil {
		return fmt.Sprintf("(QMP: %v)", err)
	}
	raw, err := call("x-query-virtio", nil)
	if err != nil {
		return fmt.Sprintf("(QMP: %v)", err)
	}
	var devs []struct {
		Path string `json:"path"`
		Name string `json:"name"`
	}
	json.Unmarshal(raw, &devs)
	var out []string
	for _, d := range devs {
		if d.Name != "virtio-serial" {
			continue
		}
		for q := 0; q < 8; q++ {
			raw, err := call("x-query-virtio-queue-status", map[string]any{"path": d.Path, "queue": q})
			if err != nil {
				break // past the device's last queue
			}
			var st map[string]any
			json.Unmarshal(raw, &st)
			out = append(out, fmt.Sprintf("q%d avail %v/%v used %v signalled %v inuse %v", q,
				st["shadow-avail-idx"], st["last-avail-idx"], st["used-idx"], st["signalled-used"], st["inuse"]))
		}
	}
	if len(out) == 0 {
		out = append(out, "(QMP: no virtio-serial device)")
	}
	// Whether the guest's CPU runs or waits halted, and where, with
	// interrupts enabled or not (the flags); and its local APIC's timer
	// and the interrupts it holds pending (IRR) or in service (ISR): a
	// halted CPU with one pending missed its wake-up.
	hmp := func(cmd string) string {
		raw, err := call("human-monitor-command", map[string]any{"command-line": cmd})
		if err != nil {
			return ""
		}
		var text string
		json.Unmarshal(raw, &text)
		return text
	}
	for _, f := range strings.Fields(hmp("info registers")) {
		for _, reg := range []string{"RIP=", "EIP=", "RFL=", "EFL=", "HLT="} {
			if strings.HasPrefix(f, reg) {
				out = append(out, "vCPU "+f)
			}
		}
	}
	// What the vCPU executes (a loop it spins in shows here).
	if code := strings.Fields(strings.ReplaceAll(hmp("x/3i $pc"), "\n", " | ")); len(code) > 0 {
		out = append(out, "code "+strings.Join(code, " "))
	}
	for _, l := range strings.Split(hmp("info lapic"), "\n") {
		if f := strings.Fields(l); len(f) > 0 && slices.Contains([]string{"LVTT", "Timer", "ISR", "IRR"}, f[0]) {
			out = append(out, "APIC "+strings.Join(f, " "))
		}
	}
	return strings.Join(out, "; ")
}

// hostView is what the host says of the VM of directory dir (whose name
// is the VM's sandbox ID, that of its cgroups), for the error of a guest
// that did not answer: where each of QEMU's threads waits (state and
// kernel wait channel) and its memory cgroup's use against its limit,
// with the page cache, dirty and under-writeback bytes it holds: a QEMU
// stalled in its cgroup's reclaim answers nothing.
func (r *Runtime) hostView(dir string) string {
	var out []string
	if pid := toolkit.ReadPid(filepath.Join(dir, "qemu.pid")); pid > 0 {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
		var threads []string
		for _, t := range tasks {
			stat, _ := os.ReadFile(t + "/stat")
			wchan, _ := os.ReadFile(t + "/wchan")
			state := "?"
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 && len(stat) > i+2 {
				state = string(stat[i+2])
			}
			threads = append(threads, filepath.Base(t)+":"+state+":"+string(wchan))
		}
		out = append(out, "QEMU threads "+strings.Join(threads, " "))
	}
	if r.cg != nil && !r.cg.host.V2() {
		mem := filepath.Join(r.cg.host.Controller("memory"), cgroupPath(filepath.Base(dir)))
		read := func(f string) string {
			data, _ := os.ReadFile(filepath.Join(mem, f))
			return strings.TrimSpace(string(data))
		}
		stat := map[string]string{}
		for _, l := range strings.Split(read("memory.stat"), "\n") {
			if k, v, ok := strings.Cut(l, " "); ok {
				stat[k] = v
			}
		}
		out = append(out, fmt.Sprintf("memory cgroup usage %s of %s (failcnt %s): cache %s rss %s dirty %s writeback %s",
			read("memory.usage_in_bytes"), read("memory.limit_in_bytes"), read("memory.failcnt"),
			stat["cache"], stat["rss"], stat["dirty"], stat["writeback"]))
	}
	return strings.Join(out, "; ")
}
