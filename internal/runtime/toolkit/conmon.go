package toolkit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Conmon is one container's conmon: the monitor that outlives the agent,
// runs "<Runtime> <RuntimeArgs> create" for the container, writes its
// output to LogPath in the CRI format and its exit code to ExitDir/<ID>.
// The runc back end runs it with runc, the gvisor one with a script that
// drives runsc.
type Conmon struct {
	// Path is the conmon binary; Runtime the OCI runtime conmon runs
	// (conmon's -r), with RuntimeArgs (global flags) before its subcommand.
	Path        string
	Runtime     string
	RuntimeArgs []string
	// ID is the runtime's container ID, Name the container's name.
	ID, Name string
	// Bundle is the OCI bundle directory; conmon's files go there too:
	// pidfile (the runtime's), conmon.pid, conmon.err, persist/.
	Bundle string
	// LogPath receives the container's output (k8s-file), capped at
	// LogMaxBytes.
	LogPath     string
	LogMaxBytes int64
	// ExitDir receives the exit code in a file named ID; SocketDir holds
	// conmon's attach sockets.
	ExitDir, SocketDir string
	// PersistDir is conmon's --persist-dir (it writes the exit code there
	// too); default: persist in the bundle.
	PersistDir string
	// Env is added to conmon's environment (PATH and the sync pipe are
	// set already).
	Env []string
}

// syncMessage is what conmon writes on its sync pipe (API version 1): the
// container's PID, or -1 and a message.
type syncMessage struct {
	Data    int    `json:"data"`
	Message string `json:"message"`
}

// Create launches conmon with a sync pipe (_OCI_SYNCPIPE): conmon forks
// its monitor and exits, the monitor runs the runtime's "create" and
// reports the PID it wrote to the pid file (or the runtime's error) on the
// pipe. Create blocks until then (at most 30 s or ctx's deadline) and
// returns the PID; it does not start the container.
func (c Conmon) Create(ctx context.Context) (int, error) {
	persist := c.PersistDir
	if persist == "" {
		persist = filepath.Join(c.Bundle, "persist")
	}
	if err := os.MkdirAll(persist, 0o755); err != nil {
		return 0, err
	}
	args := []string{
		"--api-version", "1",
		"-c", c.ID, "-u", c.ID, "-n", c.Name,
		"-r", c.Runtime,
		"-b", c.Bundle,
		"-p", filepath.Join(c.Bundle, "pidfile"),
		"--conmon-pidfile", filepath.Join(c.Bundle, "conmon.pid"),
		"-l", "k8s-file:" + c.LogPath,
		"--log-size-max", strconv.FormatInt(c.LogMaxBytes, 10),
		"--exit-dir", c.ExitDir,
		"--persist-dir", persist,
		"--socket-dir-path", c.SocketDir,
		"--exit-delay", "0",
	}
	for _, a := range c.RuntimeArgs {
		args = append(args, "--runtime-arg", a)
	}
	errFile, err := os.Create(filepath.Join(c.Bundle, "conmon.err"))
	if err != nil {
		return 0, err
	}
	defer errFile.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer pr.Close()
	cmd := exec.Command(c.Path, args...)
	cmd.Dir = c.Bundle
	cmd.Env = append([]string{defaultPath, "_OCI_SYNCPIPE=3"}, c.Env...)
	cmd.Stdout, cmd.Stderr = errFile, errFile
	cmd.ExtraFiles = []*os.File{pw}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return 0, fmt.Errorf("conmon: %w", err)
	}
	// conmon forks its monitor and its first process exits at once.
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("conmon: %w: %s", err, ReadTail(errFile.Name()))
	}
	waitStart := time.Now()
	deadline := waitStart.Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	pr.SetReadDeadline(deadline)
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, fmt.Errorf("%s create did not report the container within %s (its init may be stuck, e.g. reading the image's /etc/passwd or /etc/group): %s",
			filepath.Base(c.Runtime), time.Since(waitStart).Round(time.Second), ReadTail(errFile.Name()))
	}
	if err != nil {
		return 0, fmt.Errorf("conmon gave no container PID: %w: %s", err, ReadTail(errFile.Name()))
	}
	var msg syncMessage
	if err := json.Unmarshal(line, &msg); err != nil {
		return 0, fmt.Errorf("conmon: unexpected sync message %q", line)
	}
	if msg.Data <= 0 {
		return 0, fmt.Errorf("%s create failed: %s %s", filepath.Base(c.Runtime), msg.Message, ReadTail(errFile.Name()))
	}
	return msg.Data, nil
}
