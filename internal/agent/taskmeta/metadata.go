package taskmeta

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"vessel.dev/vessel/internal/task"
)

// arnPrefix is "arn:<partition>:ecs:<region>:<account>:" of a task ARN.
func arnPrefix(taskARN string) string {
	n := 0
	for i, c := range taskARN {
		if c == ':' {
			if n++; n == 5 {
				return taskARN[:i+1]
			}
		}
	}
	return ""
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func status(s task.Status) string {
	if s == "" {
		return string(task.StatusPending)
	}
	return string(s)
}

// revision is the task definition's revision, the number after the last
// colon of its ARN.
func revision(t *task.Task) string {
	if i := strings.LastIndexByte(t.TaskDefinitionArn, ':'); i >= 0 {
		return t.TaskDefinitionArn[i+1:]
	}
	return ""
}

func (s *Server) container(c *Caller, i int) ContainerMetadata {
	t := c.Task
	ct := &t.Containers[i]
	prefix := arnPrefix(t.ARN)
	m := ContainerMetadata{
		DockerID:   dockerID(c, i),
		Name:       ct.Name,
		DockerName: ct.Name,
		Image:      ct.Image,
		ImageID:    ct.ImageDigest,
		Labels: map[string]string{
			"com.amazonaws.ecs.cluster":                 prefix + "cluster/" + t.Cluster,
			"com.amazonaws.ecs.container-name":          ct.Name,
			"com.amazonaws.ecs.task-arn":                t.ARN,
			"com.amazonaws.ecs.task-definition-family":  t.Family,
			"com.amazonaws.ecs.task-definition-version": revision(t),
		},
		DesiredStatus: status(t.DesiredStatus),
		KnownStatus:   status(ct.LastStatus),
		ExitCode:      ct.ExitCode,
		Limits:        Limits{CPU: float64(ct.CPUUnits), Memory: ct.MemoryMiB},
		CreatedAt:     timePtr(t.CreatedAt),
		StartedAt:     timePtr(ct.StartedAt),
		FinishedAt:    timePtr(ct.FinishedAt),
		Type:          "NORMAL",
		ContainerARN:  prefix + "container/" + t.Cluster + "/" + t.ID + "/" + ct.Name,
	}
	if t.DesiredStatus == task.StatusRunning || t.DesiredStatus == "" {
		m.DesiredStatus = string(task.StatusRunning)
	}
	if lc := ct.Log; lc != nil {
		m.LogDriver = task.LogDriverAWSLogs
		m.LogOptions = map[string]string{task.AWSLogsGroup: lc.Group, task.AWSLogsRegion: lc.Region,
			"awslogs-stream": lc.StreamName(ct.Name, t.ID)}
		if lc.CreateGroup {
			m.LogOptions[task.AWSLogsCreateGroup] = "true"
		}
	}
	if ct.HealthCheck != nil {
		h := ct.HealthStatus
		if h == "" {
			h = task.HealthUnknown
		}
		m.Health = &Health{Status: h}
	}
	for _, p := range ct.Ports {
		m.Ports = append(m.Ports, Port{ContainerPort: p.ContainerPort, Protocol: p.Protocol, HostPort: p.ContainerPort,
			IPv4Addresses: []string{c.IP.String()}})
	}
	nw := Network{
		NetworkMode:              "awsvpc",
		IPv4Addresses:            []string{c.IP.String()},
		MACAddress:               c.MAC,
		IPv4SubnetCIDRBlock:      c.Prefix.String(),
		PrivateDNSName:           c.Hostname,
		SubnetGatewayIpv4Address: c.Gateway.String() + "/" + strconv.Itoa(c.Prefix.Bits()),
	}
	if t.DNS != nil {
		nw.DomainNameServers = t.DNS.Nameservers
		nw.DomainNameSearchList = t.DNS.Searches
	}
	m.Networks = []Network{nw}
	return m
}

func (s *Server) task(c *Caller) TaskMetadata {
	t := c.Task
	m := TaskMetadata{
		Cluster:            arnPrefix(t.ARN) + "cluster/" + t.Cluster,
		TaskARN:            t.ARN,
		Family:             t.Family,
		Revision:           revision(t),
		DesiredStatus:      status(t.DesiredStatus),
		KnownStatus:        status(t.LastStatus),
		Limits:             Limits{CPU: float64(t.CPUUnits) / 1024, Memory: t.MemoryMiB},
		PullStartedAt:      timePtr(t.PullStartedAt),
		PullStoppedAt:      timePtr(t.PullStoppedAt),
		ExecutionStoppedAt: timePtr(t.ExecutionStoppedAt),
		AvailabilityZone:   s.cfg.AvailabilityZone,
		LaunchType:         "FARGATE",
		Containers:         []ContainerMetadata{},
	}
	if m.AvailabilityZone == "" {
		m.AvailabilityZone = t.Subnet
	}
	if name, ok := strings.CutPrefix(t.Group, "service:"); ok {
		m.ServiceName = name
	}
	if t.EphemeralStorageGiB > 0 {
		m.EphemeralStorageMetrics = &EphemeralStorage{Reserved: int64(t.EphemeralStorageGiB) << 10}
	}
	for i := range t.Containers {
		m.Containers = append(m.Containers, s.container(c, i))
	}
	return m
}

// stats reads container i's counters and keeps them for the next
// reading's precpu_stats.
func (s *Server) stats(ctx context.Context, c *Caller, i int) (*Stats, error) {
	t := c.Task
	if c.Stats == nil {
		return nil, fmt.Errorf("the task's runtime keeps no counters")
	}
	u, _, err := c.Stats.Stats(ctx, t.ID, t.Containers[i].Name)
	if err != nil {
		return nil, err
	}
	sys, err := s.cfg.SystemCPU()
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC()
	id := dockerID(c, i)
	st := &Stats{
		Read: now,
		Name: t.Containers[i].Name,
		ID:   id,
		CPUStats: CPUStats{
			CPUUsage: CPUUsage{TotalUsage: uint64(u.CPUNanos), UsageInKernelmode: uint64(u.CPUSystemNanos),
				UsageInUsermode: uint64(u.CPUUserNanos)},
			SystemCPUUsage: sys,
			OnlineCPUs:     uint32(goruntime.NumCPU()),
		},
		MemoryStats: MemoryStats{Usage: uint64(u.MemoryBytes), MaxUsage: uint64(u.MemoryMaxBytes),
			Limit: uint64(u.MemoryLimitBytes), Stats: map[string]uint64{}},
		BlkioStats: BlkioStats{IOServiceBytesRecursive: []BlkioEntry{}, IOServicedRecursive: []BlkioEntry{},
			IOQueueRecursive: []BlkioEntry{}, IOServiceTimeRecursive: []BlkioEntry{}, IOWaitTimeRecursive: []BlkioEntry{},
			IOMergedRecursive: []BlkioEntry{}, IOTimeRecursive: []BlkioEntry{}, SectorsRecursive: []BlkioEntry{}},
		Networks: map[string]NetIO{},
	}
	if st.MemoryStats.Limit == 0 || t.MemoryMiB > 0 && st.MemoryStats.Limit > uint64(t.MemoryMiB)<<20 {
		st.MemoryStats.Limit = uint64(t.MemoryMiB) << 20
	}
	for k, v := range u.MemoryStat {
		st.MemoryStats.Stats[k] = uint64(max(v, 0))
	}
	var nio NetIO
	netOK := false
	if c.Net != nil {
		if nio, err = c.Net(); err == nil {
			st.Networks["eth0"], netOK = nio, true
		}
	}
	s.mu.Lock()
	prev, ok := s.prev[id]
	s.prev[id] = sample{at: now, cpu: st.CPUStats, net: nio, netOK: netOK}
	for k, p := range s.prev {
		if now.Sub(p.at) > time.Hour {
			delete(s.prev, k)
		}
	}
	s.mu.Unlock()
	if ok {
		st.PreRead, st.PreCPUStats = prev.at, prev.cpu
		if d := now.Sub(prev.at).Seconds(); d > 0 && netOK && prev.netOK {
			st.NetworkRateStats = &NetworkRateStats{
				RxBytesPerSec: float64(nio.RxBytes-min(prev.net.RxBytes, nio.RxBytes)) / d,
				TxBytesPerSec: float64(nio.TxBytes-min(prev.net.TxBytes, nio.TxBytes)) / d,
			}
		}
	}
	return st, nil
}

// systemCPU is the host's CPU time, all CPUs, in nanoseconds: the first
// line of /proc/stat, in USER_HZ ticks (100 a second on Linux).
func systemCPU() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		var ticks uint64
		for _, v := range f[1:min(len(f), 8)] { // user nice system idle iowait irq softirq
			n, _ := strconv.ParseUint(v, 10, 64)
			ticks += n
		}
		return ticks * 10_000_000, nil
	}
	return 0, fmt.Errorf("taskmeta: /proc/stat has no cpu line")
}
