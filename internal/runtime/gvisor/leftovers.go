package gvisor

import (
	"os"
	"path/filepath"
	"strings"
)

// Leftovers lists what of sandbox id is still on the host: its directory,
// mounts, loop devices, cgroups and the processes in them, runsc state,
// and processes (runsc-sandbox, runsc-gofer, conmons, monitors) that
// mention it. After Delete it must be empty. Tests and the agent's
// self-checks use it.
func (r *Runtime) Leftovers(id string) []string {
	// runsc names its state files <container>_sandbox:<sandbox>.state
	// (and .lock), and the sandbox's control socket runsc-<sandbox>.sock.
	var state []string
	entries, _ := os.ReadDir(r.runscRoot)
	for _, e := range entries {
		n := e.Name()
		if strings.Contains(n, "_sandbox:"+id+".") || n == "runsc-"+id+".sock" {
			state = append(state, "runsc state "+filepath.Join(r.runscRoot, n))
		}
	}
	dir := r.sandboxDir(id)
	return r.sb.Leftovers(id, state, func(cmdline string) bool {
		return strings.Contains(cmdline, dir+"/") || strings.Contains(cmdline, "="+dir+" ") ||
			strings.Contains(cmdline, " "+id+"-") || strings.HasSuffix(strings.TrimSpace(cmdline), " "+id)
	})
}
