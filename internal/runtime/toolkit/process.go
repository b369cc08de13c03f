package toolkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ReadTail returns the last 2000 bytes of a file, trimmed.
func ReadTail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(bytes.TrimSpace(data))
}

// ReadPid reads a PID file; 0 when it is missing or malformed.
func ReadPid(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// ProcessAlive reports whether pid runs (not a zombie) with the given
// command name, which guards against a reused PID.
func ProcessAlive(pid int, comm string) bool {
	c, running := procStat(pid)
	return running && c == comm
}

// ProcessRunning reports whether pid exists and is neither a zombie nor
// dead, whatever its command.
func ProcessRunning(pid int) bool {
	_, running := procStat(pid)
	return running
}

// procStat returns pid's command name from /proc/<pid>/stat and whether it
// runs: it exists and is neither a zombie nor dead.
func procStat(pid int) (comm string, running bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	s := string(data)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open || close+2 >= len(s) {
		return "", false
	}
	return s[open+1 : close], s[close+2] != 'Z' && s[close+2] != 'X'
}

// HostLimits returns the agent's hard RLIMIT_NOFILE, which a container's
// cannot exceed (root lacks CAP_SYS_RESOURCE in some hosts).
func HostLimits() (nofile uint64, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	return rl.Max, nil
}

// initCandidates are where Debian's tini package puts its static init.
var initCandidates = []string{"/usr/bin/tini-static", "/usr/local/bin/tini-static"}

// FindInit returns the host's static init for containers (Debian's
// tini-static, the first found), or "" when there is none.
func FindInit() string {
	if p, err := exec.LookPath("tini-static"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	for _, p := range initCandidates {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// ProcessesMentioning lists the host's processes whose command line
// (arguments joined by spaces) mentions reports, as "process <pid>:
// <command line>": for the Leftovers of a back end.
func ProcessesMentioning(mentions func(cmdline string) bool) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil || len(data) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(data), "\x00", " ")
		if mentions(cmdline) {
			out = append(out, "process "+filepath.Base(filepath.Dir(p))+": "+cmdline)
		}
	}
	return out
}
