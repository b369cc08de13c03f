package taskmeta

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/httpserve"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/sockopt"
	"vessel.dev/vessel/internal/task"
)

// Caller is a task that asks the endpoint, as the agent knows it.
type Caller struct {
	// Task is the task's record as the control plane assigned it (ARN,
	// size, containers and their states as reported).
	Task *task.Task
	// IP is the task's address, Prefix its subnet, Gateway the subnet's
	// gateway, MAC eth0's address, Hostname the task's host name.
	IP       netip.Addr
	Prefix   netip.Prefix
	Gateway  netip.Addr
	MAC      string
	Hostname string
	// SandboxID is the ID the task's sandbox was made under, which its
	// containers' IDs begin with: the task's, or for a sandbox made
	// ahead of its task (a warm one) its own. Empty means the task's.
	SandboxID string
	// Stats reads the sandbox's counters; nil when its runtime has none.
	Stats runtime.Statser
	// Net reads eth0's counters as the task sees them; nil for none.
	Net func() (NetIO, error)
}

// Source finds the task that asks.
type Source interface {
	// Caller returns the task of this host whose address is ip.
	Caller(ip netip.Addr) (*Caller, bool)
}

// Config configures a Server.
type Config struct {
	// Source is required.
	Source Source
	// Listen are the addresses to serve on (network.Manager's
	// MetadataListen), bound with IP_FREEBIND: a gateway appears with its
	// subnet's first task.
	Listen []netip.AddrPort
	// AvailabilityZone is the task's AvailabilityZone; "" gives the
	// subnet's name, as ECS names a zone by where the task's subnet is.
	AvailabilityZone string
	Logger           *slog.Logger
	// Now and SystemCPU are seams for tests: the time of a sample and the
	// host's CPU time in nanoseconds (all CPUs, from /proc/stat).
	Now       func() time.Time
	SystemCPU func() (uint64, error)
}

// Server answers the task metadata endpoint.
type Server struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	prev map[string]sample // by DockerId: the previous stats sample
}

// sample is one stats reading kept for the next one's precpu_stats.
type sample struct {
	at  time.Time
	cpu CPUStats
	net NetIO
	// netOK says net was read.
	netOK bool
}

// New checks cfg and returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errdefs.InvalidArgument("taskmeta: Config.Source is required (the agent's tasks)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SystemCPU == nil {
		cfg.SystemCPU = systemCPU
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "taskmeta"), prev: map[string]sample{}}, nil
}

// Serve listens on every Config.Listen address and serves until ctx is
// done. An address it cannot bind is logged and skipped; it fails only
// when it can bind none.
func (s *Server) Serve(ctx context.Context) error {
	lc := net.ListenConfig{Control: sockopt.FreeBind}
	srv := httpserve.New(s.Handler())
	var lns []net.Listener
	for _, a := range s.cfg.Listen {
		ln, err := lc.Listen(ctx, "tcp4", a.String())
		if err != nil {
			s.log.Warn("task metadata endpoint: cannot listen; tasks of this subnet get no metadata", "address", a, "err", err)
			continue
		}
		lns = append(lns, ln)
	}
	if len(lns) == 0 && len(s.cfg.Listen) > 0 {
		return fmt.Errorf("taskmeta: could not listen on any of %v", s.cfg.Listen)
	}
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Warn("task metadata endpoint stopped serving", "address", ln.Addr(), "err", err)
			}
		}()
	}
	s.log.Info("task metadata endpoint listening", "addresses", s.cfg.Listen)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	wg.Wait()
	return nil
}

const paths = "/v4/<container id>, /v4/<container id>/task, /v4/<container id>/stats, /v4/<container id>/task/stats (or /v3/...)"

// Handler serves the endpoint's paths, knowing the caller by the
// request's RemoteAddr.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serve)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not accepted; the task metadata endpoint answers GET", r.Method))
		return
	}
	version, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok || version != "v4" && version != "v3" {
		writeError(w, http.StatusNotFound, fmt.Sprintf("path %q is not served; the paths are %s", r.URL.Path, paths))
		return
	}
	id, sub, _ := strings.Cut(strings.TrimSuffix(rest, "/"), "/")
	if sub != "" && sub != "task" && sub != "stats" && sub != "task/stats" {
		writeError(w, http.StatusNotFound, fmt.Sprintf("path %q is not served; the paths are %s", r.URL.Path, paths))
		return
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		writeError(w, http.StatusBadRequest, "the caller's address "+r.RemoteAddr+" is not an IP address and port")
		return
	}
	c, found := s.cfg.Source.Caller(ap.Addr().Unmap())
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no task of this host has address %s; the endpoint answers only the tasks it runs", ap.Addr().Unmap()))
		return
	}
	t := c.Task
	ci := containerIndex(c, id)
	if ci < 0 {
		// The same answer whether id names another task's container or
		// nothing at all: a task learns nothing of others.
		writeError(w, http.StatusNotFound, fmt.Sprintf("container %q is not a container of the calling task; use the ID in ECS_CONTAINER_METADATA_URI_V4", id))
		return
	}
	switch sub {
	case "":
		writeJSON(w, s.container(c, ci))
	case "task":
		writeJSON(w, s.task(c))
	case "stats":
		st, err := s.stats(r.Context(), c, ci)
		if err != nil {
			s.log.Warn("task metadata endpoint: reading counters failed", "task", t.ID, "container", t.Containers[ci].Name, "err", err)
			writeError(w, http.StatusInternalServerError, "the container's counters could not be read: "+err.Error())
			return
		}
		writeJSON(w, st)
	case "task/stats":
		out := map[string]*Stats{}
		for i := range t.Containers {
			st, err := s.stats(r.Context(), c, i)
			if err != nil {
				// A container not started yet, or gone: no counters.
				s.log.Debug("task metadata endpoint: no counters", "task", t.ID, "container", t.Containers[i].Name, "err", err)
				out[dockerID(c, i)] = nil
				continue
			}
			out[dockerID(c, i)] = st
		}
		writeJSON(w, out)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// writeError answers as the ECS agent does: a JSON string.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(msg)
}

// dockerID is container i's ID: ContainerID's (the RuntimeID
// DescribeTasks shows).
func dockerID(c *Caller, i int) string {
	return ContainerID(cmp.Or(c.SandboxID, c.Task.ID), c.Task.Containers[i].Name)
}

// ContainerID is the ID of container name of the sandbox made under ID
// sandboxID (a task's ID, or a warm sandbox's): the runtime's ID of the
// container, the RuntimeID DescribeTasks shows and the DockerId of the
// metadata, whose URIs end with it.
func ContainerID(sandboxID, name string) string { return sandboxID + "-" + name }

func containerIndex(c *Caller, id string) int {
	for i := range c.Task.Containers {
		if dockerID(c, i) == id {
			return i
		}
	}
	return -1
}

// URI is ECS_CONTAINER_METADATA_URI_V4 of container name of the sandbox
// made under sandboxID (version "v4"), or ECS_CONTAINER_METADATA_URI
// (version "v3").
func URI(version, sandboxID, name string) string {
	return "http://" + network.MetadataAddr.String() + "/" + version + "/" + ContainerID(sandboxID, name)
}

// Env is the environment every container of an ECS task gets, in the
// sandbox made under sandboxID (Caller.SandboxID).
func Env(sandboxID, name string) map[string]string {
	return map[string]string{
		"ECS_CONTAINER_METADATA_URI_V4": URI("v4", sandboxID, name),
		"ECS_CONTAINER_METADATA_URI":    URI("v3", sandboxID, name),
		"AWS_EXECUTION_ENV":             "AWS_ECS_FARGATE",
	}
}
