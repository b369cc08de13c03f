package taskmeta

import "time"

// The JSON answers, with the field names ECS documents for the task
// metadata endpoint version 4 on Fargate.

// ContainerMetadata is ${URI}'s answer, and each of TaskMetadata's
// Containers.
type ContainerMetadata struct {
	DockerID      string            `json:"DockerId"`
	Name          string            `json:"Name"`
	DockerName    string            `json:"DockerName"`
	Image         string            `json:"Image"`
	ImageID       string            `json:"ImageID"`
	Ports         []Port            `json:"Ports,omitempty"`
	Labels        map[string]string `json:"Labels"`
	DesiredStatus string            `json:"DesiredStatus"`
	KnownStatus   string            `json:"KnownStatus"`
	ExitCode      *int              `json:"ExitCode,omitempty"`
	Limits        Limits            `json:"Limits"`
	CreatedAt     *time.Time        `json:"CreatedAt,omitempty"`
	StartedAt     *time.Time        `json:"StartedAt,omitempty"`
	FinishedAt    *time.Time        `json:"FinishedAt,omitempty"`
	Type          string            `json:"Type"`
	Health        *Health           `json:"Health,omitempty"`
	Networks      []Network         `json:"Networks"`
	ContainerARN  string            `json:"ContainerARN"`
	LogDriver     string            `json:"LogDriver,omitempty"`
	LogOptions    map[string]string `json:"LogOptions,omitempty"`
	RestartCount  *int              `json:"RestartCount,omitempty"`
}

// Limits are a container's (CPU in CPU units) or a task's (CPU in vCPUs)
// limits; Memory is in MiB.
type Limits struct {
	CPU    float64 `json:"CPU"`
	Memory int64   `json:"Memory,omitempty"`
}

// Port is a container port of the task's interface.
type Port struct {
	ContainerPort int32    `json:"ContainerPort"`
	Protocol      string   `json:"Protocol"`
	HostPort      int32    `json:"HostPort"`
	HostIP        string   `json:"HostIp,omitempty"`
	IPv4Addresses []string `json:"IPv4Addresses,omitempty"`
}

// Health is a container's health check state.
type Health struct {
	Status string `json:"status"`
}

// Network is the task's awsvpc interface as each container sees it.
type Network struct {
	NetworkMode              string   `json:"NetworkMode"`
	IPv4Addresses            []string `json:"IPv4Addresses"`
	AttachmentIndex          int      `json:"AttachmentIndex"`
	MACAddress               string   `json:"MACAddress"`
	IPv4SubnetCIDRBlock      string   `json:"IPv4SubnetCIDRBlock"`
	DomainNameServers        []string `json:"DomainNameServers,omitempty"`
	DomainNameSearchList     []string `json:"DomainNameSearchList,omitempty"`
	PrivateDNSName           string   `json:"PrivateDNSName"`
	SubnetGatewayIpv4Address string   `json:"SubnetGatewayIpv4Address"`
}

// TaskMetadata is ${URI}/task's answer.
type TaskMetadata struct {
	Cluster                 string              `json:"Cluster"`
	TaskARN                 string              `json:"TaskARN"`
	Family                  string              `json:"Family"`
	Revision                string              `json:"Revision"`
	ServiceName             string              `json:"ServiceName,omitempty"`
	DesiredStatus           string              `json:"DesiredStatus"`
	KnownStatus             string              `json:"KnownStatus"`
	Limits                  Limits              `json:"Limits"`
	PullStartedAt           *time.Time          `json:"PullStartedAt,omitempty"`
	PullStoppedAt           *time.Time          `json:"PullStoppedAt,omitempty"`
	ExecutionStoppedAt      *time.Time          `json:"ExecutionStoppedAt,omitempty"`
	AvailabilityZone        string              `json:"AvailabilityZone"`
	LaunchType              string              `json:"LaunchType"`
	Containers              []ContainerMetadata `json:"Containers"`
	EphemeralStorageMetrics *EphemeralStorage   `json:"EphemeralStorageMetrics,omitempty"`
}

// EphemeralStorage is the task's reserved ephemeral storage, in MiB.
type EphemeralStorage struct {
	Utilized int64 `json:"Utilized"`
	Reserved int64 `json:"Reserved"`
}

// Stats is Docker's ContainerStats (API v1.30) as ECS answers ${URI}/stats,
// with ECS's network_rate_stats.
type Stats struct {
	Read             time.Time         `json:"read"`
	PreRead          time.Time         `json:"preread"`
	Name             string            `json:"name"`
	ID               string            `json:"id"`
	NumProcs         int               `json:"num_procs"`
	PidsStats        PidsStats         `json:"pids_stats"`
	CPUStats         CPUStats          `json:"cpu_stats"`
	PreCPUStats      CPUStats          `json:"precpu_stats"`
	MemoryStats      MemoryStats       `json:"memory_stats"`
	BlkioStats       BlkioStats        `json:"blkio_stats"`
	StorageStats     struct{}          `json:"storage_stats"`
	Networks         map[string]NetIO  `json:"networks"`
	NetworkRateStats *NetworkRateStats `json:"network_rate_stats,omitempty"`
}

// PidsStats counts processes.
type PidsStats struct {
	Current uint64 `json:"current,omitempty"`
}

// CPUStats is one CPU sample; the usage and system figures are in
// nanoseconds.
type CPUStats struct {
	CPUUsage       CPUUsage       `json:"cpu_usage"`
	SystemCPUUsage uint64         `json:"system_cpu_usage"`
	OnlineCPUs     uint32         `json:"online_cpus"`
	ThrottlingData ThrottlingData `json:"throttling_data"`
}

// CPUUsage is the container's CPU time.
type CPUUsage struct {
	TotalUsage        uint64   `json:"total_usage"`
	PercpuUsage       []uint64 `json:"percpu_usage,omitempty"`
	UsageInKernelmode uint64   `json:"usage_in_kernelmode"`
	UsageInUsermode   uint64   `json:"usage_in_usermode"`
}

// ThrottlingData is CFS throttling (not counted here: zeros).
type ThrottlingData struct {
	Periods          uint64 `json:"periods"`
	ThrottledPeriods uint64 `json:"throttled_periods"`
	ThrottledTime    uint64 `json:"throttled_time"`
}

// MemoryStats is the container's memory, in bytes.
type MemoryStats struct {
	Usage    uint64            `json:"usage"`
	MaxUsage uint64            `json:"max_usage"`
	Stats    map[string]uint64 `json:"stats"`
	Limit    uint64            `json:"limit"`
}

// BlkioStats is Docker's block I/O statistics (not counted here: empty
// lists, as a sandbox without block devices of its own shows).
type BlkioStats struct {
	IOServiceBytesRecursive []BlkioEntry `json:"io_service_bytes_recursive"`
	IOServicedRecursive     []BlkioEntry `json:"io_serviced_recursive"`
	IOQueueRecursive        []BlkioEntry `json:"io_queue_recursive"`
	IOServiceTimeRecursive  []BlkioEntry `json:"io_service_time_recursive"`
	IOWaitTimeRecursive     []BlkioEntry `json:"io_wait_time_recursive"`
	IOMergedRecursive       []BlkioEntry `json:"io_merged_recursive"`
	IOTimeRecursive         []BlkioEntry `json:"io_time_recursive"`
	SectorsRecursive        []BlkioEntry `json:"sectors_recursive"`
}

// BlkioEntry is one device's counter.
type BlkioEntry struct {
	Major uint64 `json:"major"`
	Minor uint64 `json:"minor"`
	Op    string `json:"op"`
	Value uint64 `json:"value"`
}

// NetIO is an interface's counters, as the task sees them.
type NetIO struct {
	RxBytes   uint64 `json:"rx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	RxErrors  uint64 `json:"rx_errors"`
	RxDropped uint64 `json:"rx_dropped"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxErrors  uint64 `json:"tx_errors"`
	TxDropped uint64 `json:"tx_dropped"`
}

// NetworkRateStats is the rate since the previous sample, in bytes a second.
type NetworkRateStats struct {
	RxBytesPerSec float64 `json:"rx_bytes_per_sec"`
	TxBytesPerSec float64 `json:"tx_bytes_per_sec"`
}
