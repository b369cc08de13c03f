package gvisor

import "strings"

// runtimeScript is the program conmon runs as a container's OCI runtime
// (conmon's -r) to create it. conmon waits for the PID in the pid file it
// names, but runsc writes there the sandbox's PID, which is no child of
// conmon and outlives the container; and runsc takes a sub-container's
// stdio at "runsc start", not at "runsc create". So the script runs
// "runsc run --detach" (create and start in one runsc process, one fewer
// than the two commands) with conmon's stdio, then leaves the container's monitor running and
// hands conmon the monitor's PID: the monitor becomes conmon's child
// (conmon is a subreaper) and ends with the container's exit code.
func runtimeScript(runsc string, flags []string, bundle, cid string) string {
	cmd := command(runsc, flags)
	b := quote(bundle)
	return `#!/bin/sh
# Written by Vessel's gvisor runtime: conmon's "runtime" for container ` + cid + `.
pidfile=; prev=
for a; do
	case $prev in --pid-file) pidfile=$a ;; esac
	prev=$a
done
if [ -z "$pidfile" ]; then
	echo "conmon gave no --pid-file: $*" >&2
	exit 1
fi
` + cmd + ` run --detach --bundle ` + b + ` --pid-file ` + quote(bundle+"/runsc.pid") + ` ` + quote(cid) + ` || exit $?
` + quote(bundle+"/monitor") + ` </dev/null >/dev/null 2>>` + quote(bundle+"/monitor.err") + ` &
echo $! >"$pidfile"
`
}

func command(runsc string, flags []string) string {
	cmd := quote(runsc)
	for _, f := range flags {
		cmd += " " + quote(f)
	}
	return cmd
}

// monitorScript is a container's monitor: it waits for the container with
// "runsc wait" and ends with its exit code (runsc gives 128+signal for a
// signalled process). runsc would answer "not started" before "runsc
// start" (retried every 50 ms, for at most a minute), and fails
// when the sandbox is gone, which only the host's OOM killer or Delete
// does: then the monitor ends with 137 (SIGKILL).
func monitorScript(runsc string, flags []string, cid string) string {
	cmd := command(runsc, flags)
	return `#!/bin/sh
# Written by Vessel's gvisor runtime: the monitor conmon waits on for
# container ` + cid + `.
i=0
while :; do
	out=$(` + cmd + ` wait ` + quote(cid) + ` 2>&1)
	case $out in
	*'"exitStatus":'*)
		code=${out##*'"exitStatus":'}
		code=${code%%[!0-9]*}
		exit "${code:-137}" ;;
	*'not started'*)
		i=$((i+1))
		if [ "$i" -gt 1200 ]; then echo "$out" >&2; exit 137; fi
		sleep 0.05 ;;
	*)
		printf '%s\n' "$out" >&2
		exit 137 ;;
	esac
done
`
}

// quote quotes s for the shell.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
