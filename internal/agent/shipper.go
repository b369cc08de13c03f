package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/cwlogs"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/fsutil"
	"vessel.dev/vessel/internal/task"
)

// The awslogs shipper sends the output of a task's awslogs containers,
// read from their log files in the task's log directory, to the control
// plane's log store (agentproto.LogSink), batched, at least once: each
// event carries the offsets of its lines in the file (counted across
// truncations, see shipState), the control plane drops what it holds
// already, and the offset it acknowledges is kept on disk, so that an
// agent killed at any point resumes where the control plane stands and no
// line is lost or shown twice. The file is the buffer: a container's output
// is never blocked nor dropped by shipping, whatever the driver's mode.
//
// Files in the task's log directory:
//
//	awslogs.json          the containers' LogConfig, written before they start
//	<container>.awslogs   shipState: the acknowledged offset, fsynced
//	awslogs.done          every line of a finished task is acknowledged
const (
	awslogsConfigFile = "awslogs.json"
	awslogsDoneFile   = "awslogs.done"
	awslogsStateExt   = ".awslogs"
)

// Shipping's pace and limits.
var (
	shipInterval = 500 * time.Millisecond
	// multilineFlush sends a multi-line event that no new line has joined
	// for this long, as the awslogs driver does.
	multilineFlush = 2 * time.Second
)

const (
	maxBatchEvents = cwlogs.MaxBatchEvents
	maxBatchBytes  = 1 << 20
	maxEventBytes  = cwlogs.MaxEventBytes
	maxReadBytes   = 4 << 20
)

// shipState is a container's shipping progress kept on disk. Offsets the
// control plane sees are Base + an offset in the file: when the file is
// truncated (the runtime caps its size), Base grows by what was read of it,
// so that offsets keep growing.
type shipState struct {
	Base  int64 `json:"base"`
	Acked int64 `json:"acked"` // the acknowledged offset, Base included
}

// writeAWSLogsConfig keeps the task's awslogs containers' configuration in
// its log directory for the shipper, which may outlive this agent's run.
func writeAWSLogsConfig(dir string, t *task.Task) error {
	cfg := map[string]*task.LogConfig{}
	for _, c := range t.Containers {
		if c.Log != nil {
			cfg[c.Name] = c.Log
		}
	}
	if len(cfg) == 0 {
		return nil
	}
	data, _ := json.Marshal(cfg)
	return fsutil.WriteFileDurable(filepath.Join(dir, awslogsConfigFile), data)
}

// createLogStreams asks the control plane for the streams of the task's
// awslogs containers; a missing group is the task's failure to start.
func (w *worker) createLogStreams(ctx context.Context) error {
	if !hasAWSLogs(w.task) {
		return nil
	}
	sink, ok := w.agent.cfg.ControlPlane.(agentproto.LogSink)
	if !ok {
		return fmt.Errorf("%s: this host's connection to the control plane cannot ship awslogs logs", task.ReasonResourceInitialization)
	}
	res, err := sink.CreateTaskLogStreams(ctx, w.agent.cfg.Host.ID, w.task.ID)
	if err != nil {
		return fmt.Errorf("%s: creating the task's log streams: %v", task.ReasonResourceInitialization, err)
	}
	if res.Failure != "" {
		return errors.New(res.Failure)
	}
	return nil
}

func hasAWSLogs(t *task.Task) bool {
	for _, c := range t.Containers {
		if c.Log != nil {
			return true
		}
	}
	return false
}

// shipLogs starts a shipper for every task log directory with awslogs
// containers that is not done, until ctx is done.
func (a *Agent) shipLogs(ctx context.Context) {
	sink, ok := a.cfg.ControlPlane.(agentproto.LogSink)
	if a.cfg.LogDir == "" || !ok {
		return
	}
	var mu sync.Mutex
	active := map[string]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(shipInterval)
	defer tick.Stop()
	for {
		entries, _ := os.ReadDir(a.cfg.LogDir)
		for _, e := range entries {
			id := e.Name()
			dir := filepath.Join(a.cfg.LogDir, id)
			if !e.IsDir() || fileExists(filepath.Join(dir, awslogsDoneFile)) || !fileExists(filepath.Join(dir, awslogsConfigFile)) {
				continue
			}
			mu.Lock()
			busy := active[id]
			active[id] = true
			mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.shipTask(ctx, sink, id, dir)
				mu.Lock()
				delete(active, id)
				mu.Unlock()
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// shipTask ships a task's awslogs containers until the task has ended and
// every line is acknowledged (then marks the directory done), or ctx is
// done.
func (a *Agent) shipTask(ctx context.Context, sink agentproto.LogSink, taskID, dir string) {
	log := a.log.With("task", taskID)
	data, err := os.ReadFile(filepath.Join(dir, awslogsConfigFile))
	var cfg map[string]*task.LogConfig
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		log.Error("awslogs configuration of a task is unreadable: its logs are not shipped", "err", err)
		fsutil.WriteFileDurable(filepath.Join(dir, awslogsDoneFile), nil)
		return
	}
	var ships []*containerShipper
	for name, lc := range cfg {
		start, err := lc.StartPattern()
		if err != nil {
			log.Error("awslogs configuration of a container is not valid: its logs are not shipped", "container", name, "err", err)
			continue
		}
		cs := &containerShipper{name: name, path: filepath.Join(dir, name+".log"), statePath: filepath.Join(dir, name+awslogsStateExt), start: start}
		if err := cs.load(); err != nil {
			log.Error("awslogs shipping state is unreadable: shipping again from the file's start (the control plane drops what it holds)", "container", name, "err", err)
		}
		ships = append(ships, cs)
	}
	backoff := shipInterval
	for {
		// Whether the task still runs is read before the files: the last
		// pass after it ended sees every line it wrote.
		ended := !a.running(taskID)
		done := true
		failed := false
		for _, cs := range ships {
			ok, err := cs.pass(ctx, sink, a.cfg.Host.ID, taskID, ended)
			if errdefs.IsNotFound(err) {
				log.Warn("the control plane takes no more logs of this task (it is not placed on this host any more): shipping stops", "container", cs.name, "err", err)
				cs.gone = true
				continue
			}
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("shipping awslogs events failed; retrying", "container", cs.name, "err", err)
				}
				failed = true
			}
			done = done && ok && err == nil
		}
		if ended && done {
			fsutil.WriteFileDurable(filepath.Join(dir, awslogsDoneFile), nil)
			log.Debug("awslogs shipping done")
			return
		}
		wait := shipInterval
		if failed {
			backoff = min(2*backoff, 10*time.Second)
			wait = backoff
		} else {
			backoff = shipInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// containerShipper ships one container's log file.
type containerShipper struct {
	name      string
	path      string
	statePath string
	start     *regexp.Regexp // nil: every line is an event
	gone      bool

	state shipState
	// read is the file offset read up to; pending the multi-line event
	// being assembled, seen when its last line was read.
	read    int64
	pending *agentproto.LogEvent
	seen    time.Time
	partial *agentproto.LogEvent // a line written in parts (P), not ended
	ready   []agentproto.LogEvent
}

func (cs *containerShipper) load() error {
	data, err := os.ReadFile(cs.statePath)
	if os.IsNotExist(err) {
		return nil
	}
	if err == nil {
		err = json.Unmarshal(data, &cs.state)
	}
	if err != nil {
		cs.state = shipState{}
		return err
	}
	cs.read = max(0, cs.state.Acked-cs.state.Base)
	return nil
}

func (cs *containerShipper) save() error {
	data, _ := json.Marshal(cs.state)
	return fsutil.WriteFileDurable(cs.statePath, data)
}

// rewind forgets what was read past the acknowledged offset: it is read
// again on the next pass.
func (cs *containerShipper) rewind() {
	cs.read = max(0, cs.state.Acked-cs.state.Base)
	cs.pending, cs.partial, cs.ready = nil, nil, nil
}

// pass reads what was appended, assembles events and ships the complete
// ones. final flushes the event being assembled (the task has ended). It
// reports whether everything read is acknowledged.
func (cs *containerShipper) pass(ctx context.Context, sink agentproto.LogSink, hostID, taskID string, final bool) (bool, error) {
	if cs.gone {
		return true, nil
	}
	if err := cs.readLines(time.Now()); err != nil {
		return false, err
	}
	if cs.pending != nil && (final || time.Since(cs.seen) >= multilineFlush) {
		cs.ready, cs.pending = append(cs.ready, *cs.pending), nil
	}
	for len(cs.ready) > 0 {
		n, size := 0, 0
		for n < len(cs.ready) && n < maxBatchEvents && (n == 0 || size+len(cs.ready[n].Message) <= maxBatchBytes) {
			size += len(cs.ready[n].Message)
			n++
		}
		ack, err := sink.PutTaskLogEvents(ctx, hostID, taskID, agentproto.LogEventsBatch{Container: cs.name, Events: cs.ready[:n]})
		if err != nil {
			cs.rewind()
			return false, err
		}
		if ack.Acked < cs.ready[n-1].End {
			cs.rewind()
			return false, fmt.Errorf("the control plane acknowledged offset %d, short of the batch's end %d", ack.Acked, cs.ready[n-1].End)
		}
		cs.ready = cs.ready[n:]
		cs.state.Acked = ack.Acked
		if err := cs.save(); err != nil {
			return false, fmt.Errorf("keeping the acknowledged offset: %w", err)
		}
	}
	return cs.pending == nil && cs.partial == nil, nil
}

// readLines reads the complete lines appended to the file since the last
// read and assembles them into events.
func (cs *containerShipper) readLines(now time.Time) error {
	f, err := os.Open(cs.path)
	if os.IsNotExist(err) {
		return nil // the container has not written yet
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < cs.read {
		// Truncated by the runtime's size cap: what follows is new (and
		// what was written past the last read before is lost with the
		// file's old content).
		cs.state.Base += cs.read
		cs.read = 0
		cs.partial = nil
		if err := cs.save(); err != nil {
			return err
		}
	}
	if _, err := f.Seek(cs.read, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(io.LimitReader(f, maxReadBytes), 64<<10)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil // an incomplete last line is read next time
		}
		start := cs.state.Base + cs.read
		cs.read += int64(len(line))
		end := cs.state.Base + cs.read
		t, _, partial, text, ok := parseLogLine(strings.TrimSuffix(line, "\n"))
		if !ok {
			continue
		}
		if cs.partial != nil {
			cs.partial.Message += text
			cs.partial.End = end
		} else {
			cs.partial = &agentproto.LogEvent{Time: t, Message: text, Start: start, End: end}
		}
		if partial && len(cs.partial.Message) < maxEventBytes {
			continue
		}
		l := *cs.partial
		cs.partial = nil
		cs.addLine(l, now)
	}
}

// addLine puts a whole line into events: its own, or the multi-line event
// being assembled when it does not match the start pattern.
func (cs *containerShipper) addLine(l agentproto.LogEvent, now time.Time) {
	if len(l.Message) > maxEventBytes {
		l.Message = l.Message[:maxEventBytes]
	}
	if cs.start == nil {
		cs.ready = append(cs.ready, l)
		return
	}
	if p := cs.pending; p != nil && !cs.start.MatchString(l.Message) && len(p.Message)+1+len(l.Message) <= maxEventBytes {
		p.Message += "\n" + l.Message
		p.End = l.End
		cs.seen = now
		return
	}
	if cs.pending != nil {
		cs.ready = append(cs.ready, *cs.pending)
	}
	cs.pending, cs.seen = &l, now
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
