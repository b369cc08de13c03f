package agent

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
)

var _ agentproto.LogSource = (*Agent)(nil)

// taskLogDir is where a task's containers write their logs.
func (a *Agent) taskLogDir(taskID string) string { return filepath.Join(a.cfg.LogDir, taskID) }

// parseLogLine reads one line of the CRI log format conmon writes:
// "<RFC3339Nano> <stream> <F|P> <text>".
func parseLogLine(line string) (t time.Time, stream string, partial bool, text string, ok bool) {
	parts := strings.SplitN(line, " ", 4)
	if len(parts) < 3 {
		return t, "", false, "", false
	}
	t, err := time.Parse(time.RFC3339Nano, parts[0])
	if err != nil {
		return t, "", false, "", false
	}
	if len(parts) == 4 {
		text = parts[3]
	}
	return t, parts[1], parts[2] == "P", text, true
}

// logFile follows one container's log file.
type logFile struct {
	container string
	path      string
	offset    int64
	pending   *agentproto.LogLine // a partial line waiting for its end
}

// read returns the complete lines appended since the last read. A file
// that shrank was rotated or truncated: it is read again from its start.
func (f *logFile) read() ([]agentproto.LogLine, error) {
	fh, err := os.Open(f.path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if st, err := fh.Stat(); err == nil && st.Size() < f.offset {
		f.offset = 0
	}
	if _, err := fh.Seek(f.offset, io.SeekStart); err != nil {
		return nil, err
	}
	var out []agentproto.LogLine
	r := bufio.NewReaderSize(fh, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // an incomplete last line is read next time
		}
		f.offset += int64(len(line))
		t, stream, partial, text, ok := parseLogLine(strings.TrimSuffix(line, "\n"))
		if !ok {
			continue
		}
		if f.pending != nil {
			f.pending.Text += text
		} else {
			f.pending = &agentproto.LogLine{Time: t, Container: f.container, Stream: stream, Text: text}
		}
		if !partial {
			out = append(out, *f.pending)
			f.pending = nil
		}
	}
	return out, nil
}

// Logs implements agentproto.LogSource for the tasks this host ran.
func (a *Agent) Logs(ctx context.Context, taskID string, o agentproto.LogOptions, emit func(agentproto.LogLine) error) error {
	if a.cfg.LogDir == "" || strings.ContainsAny(taskID, "/.") || taskID == "" {
		return errdefs.NotFound("no logs of task %s on host %s", taskID, a.cfg.Host.ID)
	}
	dir := a.taskLogDir(taskID)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return errdefs.NotFound("no logs of task %s on host %s (it ran on a simulated runtime, or its logs expired)", taskID, a.cfg.Host.ID)
	}
	// Containers' files appear as they first write; look for new ones on
	// every round.
	files := map[string]*logFile{}
	var order []*logFile
	scan := func() error {
		entries, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		for _, e := range entries {
			name, ok := strings.CutSuffix(e.Name(), ".log")
			if !ok || files[name] != nil || (o.Container != "" && o.Container != name) {
				continue
			}
			f := &logFile{container: name, path: filepath.Join(dir, e.Name())}
			files[name] = f
			order = append(order, f)
		}
		return nil
	}
	first := true
	for {
		if err := scan(); err != nil {
			return err
		}
		var batch []agentproto.LogLine
		for _, f := range order {
			lines, err := f.read()
			if err != nil {
				return err
			}
			if first && o.Tail > 0 && len(lines) > o.Tail {
				lines = lines[len(lines)-o.Tail:]
			}
			batch = append(batch, lines...)
		}
		sort.SliceStable(batch, func(i, j int) bool { return batch[i].Time.Before(batch[j].Time) })
		for _, l := range batch {
			if !o.Since.IsZero() && l.Time.Before(o.Since) {
				continue
			}
			if err := emit(l); err != nil {
				return err
			}
		}
		first = false
		if !o.Follow {
			return nil
		}
		if !a.running(taskID) {
			// One last read catches what was written before the end.
			o.Follow = false
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// running reports whether a worker still owns the task.
func (a *Agent) running(taskID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.workers[taskID]
	return ok
}

// collectLogs removes the logs of tasks that ended longer than
// LogRetention ago, once their awslogs containers' output is shipped.
func (a *Agent) collectLogs(ctx context.Context) {
	if a.cfg.LogDir == "" {
		return
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		entries, _ := os.ReadDir(a.cfg.LogDir)
		for _, e := range entries {
			if !e.IsDir() || a.running(e.Name()) {
				continue
			}
			dir := filepath.Join(a.cfg.LogDir, e.Name())
			if fileExists(filepath.Join(dir, awslogsConfigFile)) && !fileExists(filepath.Join(dir, awslogsDoneFile)) {
				continue // not all shipped yet (shipper.go)
			}
			info, err := e.Info()
			if err != nil || time.Since(info.ModTime()) < a.cfg.LogRetention {
				continue
			}
			// The directory's mtime changes as files are created; check
			// the files too.
			newest := info.ModTime()
			files, _ := os.ReadDir(filepath.Join(a.cfg.LogDir, e.Name()))
			for _, f := range files {
				if fi, err := f.Info(); err == nil && fi.ModTime().After(newest) {
					newest = fi.ModTime()
				}
			}
			if time.Since(newest) >= a.cfg.LogRetention {
				os.RemoveAll(filepath.Join(a.cfg.LogDir, e.Name()))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
