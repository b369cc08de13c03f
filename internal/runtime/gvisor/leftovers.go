package gvisor

import (
	"os"
	"path/filepath"
	"strings"

	"vessel.dev/vessel/internal/runtime/runc"
)

// Leftovers lists what of sandbox id is still on the host: its directory,
// mounts, loop devices, cgroups and the processes in them, runsc state,
// and processes (runsc-sandbox, runsc-gofer, conmons, monitors) that
// mention it. After Delete it must be empty. Tests and the agent's
// self-checks use it.
func (r *Runtime) Leftovers(id string) []string {
	var out []string
	dir := r.sandboxDir(id)
	if _, err := os.Stat(dir); err == nil {
		out = append(out, "directory "+dir)
	}
	for _, m := range runc.MountsUnder(dir) {
		out = append(out, "mount "+m)
	}
	for _, d := range runc.LoopDevicesOf(filepath.Join(dir, "rw.img")) {
		out = append(out, "loop device "+d)
	}
	out = append(out, r.cg.Leftovers(id)...)
	// runsc names its state files <container>_sandbox:<sandbox>.state
	// (and .lock), and the sandbox's control socket runsc-<sandbox>.sock.
	entries, _ := os.ReadDir(r.runscRoot)
	for _, e := range entries {
		n := e.Name()
		if strings.Contains(n, "_sandbox:"+id+".") || n == "runsc-"+id+".sock" {
			out = append(out, "runsc state "+filepath.Join(r.runscRoot, n))
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil || len(data) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(data), "\x00", " ")
		if strings.Contains(cmdline, dir+"/") || strings.Contains(cmdline, "="+dir+" ") ||
			strings.Contains(cmdline, " "+id+"-") || strings.HasSuffix(strings.TrimSpace(cmdline), " "+id) {
			out = append(out, "process "+filepath.Base(filepath.Dir(p))+": "+cmdline)
		}
	}
	return out
}
