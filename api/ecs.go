package api

import "encoding/json"

// ECS speaks AWS JSON 1.1: every operation is a POST to "/" with the header
// X-Amz-Target: ECSTargetPrefix + operation name (e.g.
// "AmazonEC2ContainerServiceV20141113.RunTask") and Content-Type
// ECSContentType. The JSON keys are the model's member names (camelCase).
//
// Shapes follow botocore's ecs/2014-11-13 service model. Conventions:
//   - optional strings and boxed scalars (BoxedInteger, BoxedBoolean) are
//     pointers with omitempty, so that absent and zero differ as in the SDK;
//   - the model's non-boxed Integer, Long and Boolean are plain int32, int64
//     and bool. In shapes the server returns they are always encoded, as ECS
//     does (e.g. "runningTasksCount": 0); in request-only shapes they carry
//     omitempty, as the SDK's serializer does;
//   - lists that ECS answers even when empty (the lists at the top of an
//     output, such as taskArns, and those AWS's example answers show as [],
//     such as volumes or mountPoints) are List, which encodes nil as [];
//     internal/server/wiretest checks that they are there;
//   - enums are plain strings; constants below cover the values Vessel uses;
//   - members Vessel does not model in detail are json.RawMessage, so that the
//     API layer can see they were sent and reject them rather than silently
//     dropping them.
const (
	// ECSTargetPrefix prefixes the operation name in the X-Amz-Target header.
	ECSTargetPrefix = "AmazonEC2ContainerServiceV20141113."
	// ECSContentType is the Content-Type of ECS requests and responses.
	ECSContentType = "application/x-amz-json-1.1"
)

// ECSError is the body of an ECS error response. Type is the bare exception
// name (e.g. "ClientException"); the server also sets the header
// X-Amzn-ErrorType to the same name. The ECS model gives no HTTP status per
// exception: JSON 1.1 services answer 400 for client faults and 500 for
// ServerException.
type ECSError struct {
	Type    string `json:"__type"`
	Message string `json:"message"`
}

// ECS exception names (ECSError.Type).
const (
	ECSClientException                  = "ClientException"
	ECSInvalidParameterException        = "InvalidParameterException"
	ECSClusterNotFoundException         = "ClusterNotFoundException"
	ECSServerException                  = "ServerException" // HTTP 500
	ECSServiceNotFoundException         = "ServiceNotFoundException"
	ECSServiceNotActiveException        = "ServiceNotActiveException"
	ECSClusterContainsTasksException    = "ClusterContainsTasksException"
	ECSClusterContainsServicesException = "ClusterContainsServicesException"
	ECSAccessDeniedException            = "AccessDeniedException"
	ECSUnsupportedFeatureException      = "UnsupportedFeatureException"
	ECSThrottlingException              = "ThrottlingException" // "Rate exceeded", HTTP 400
)

// Task and desired statuses (Task.lastStatus, Task.desiredStatus,
// Container.lastStatus; DesiredStatus filters ListTasks).
const (
	TaskStatusProvisioning   = "PROVISIONING"
	TaskStatusPending        = "PENDING"
	TaskStatusActivating     = "ACTIVATING"
	TaskStatusRunning        = "RUNNING"
	TaskStatusDeactivating   = "DEACTIVATING"
	TaskStatusStopping       = "STOPPING"
	TaskStatusDeprovisioning = "DEPROVISIONING"
	TaskStatusStopped        = "STOPPED"

	// DesiredStatus enum: the only values ListTasks accepts.
	DesiredStatusRunning = "RUNNING"
	DesiredStatusPending = "PENDING"
	DesiredStatusStopped = "STOPPED"
)

// TaskStopCode values (Task.stopCode).
const (
	TaskStopCodeTaskFailedToStart         = "TaskFailedToStart"
	TaskStopCodeEssentialContainerExited  = "EssentialContainerExited"
	TaskStopCodeUserInitiated             = "UserInitiated"
	TaskStopCodeServiceSchedulerInitiated = "ServiceSchedulerInitiated"
	TaskStopCodeSpotInterruption          = "SpotInterruption"
	TaskStopCodeTerminationNotice         = "TerminationNotice"
)

// Other enum values Vessel uses.
const (
	ConnectivityConnected    = "CONNECTED"
	ConnectivityDisconnected = "DISCONNECTED"

	LaunchTypeFargate    = "FARGATE"
	NetworkModeAwsvpc    = "awsvpc"
	CompatibilityFargate = "FARGATE"

	HealthStatusHealthy   = "HEALTHY"
	HealthStatusUnhealthy = "UNHEALTHY"
	HealthStatusUnknown   = "UNKNOWN"

	ContainerConditionStart    = "START"
	ContainerConditionComplete = "COMPLETE"
	ContainerConditionSuccess  = "SUCCESS"
	ContainerConditionHealthy  = "HEALTHY"

	TaskDefinitionStatusActive   = "ACTIVE"
	TaskDefinitionStatusInactive = "INACTIVE"

	// Cluster.status and Service.status are free strings in the model.
	ClusterStatusActive   = "ACTIVE"
	ClusterStatusInactive = "INACTIVE"
	ServiceStatusActive   = "ACTIVE"
	ServiceStatusDraining = "DRAINING"
	ServiceStatusInactive = "INACTIVE"

	AssignPublicIPEnabled  = "ENABLED"
	AssignPublicIPDisabled = "DISABLED"
)

// ---------------------------------------------------------------------------
// Clusters

// CreateClusterInput is the body of CreateCluster.
type CreateClusterInput struct {
	ClusterName                     *string                        `json:"clusterName,omitempty"`
	Tags                            []Tag                          `json:"tags,omitempty"`
	Settings                        []ClusterSetting               `json:"settings,omitempty"`
	Configuration                   json.RawMessage                `json:"configuration,omitempty"` // ClusterConfiguration, not modelled
	CapacityProviders               []string                       `json:"capacityProviders,omitempty"`
	DefaultCapacityProviderStrategy []CapacityProviderStrategyItem `json:"defaultCapacityProviderStrategy,omitempty"`
	ServiceConnectDefaults          json.RawMessage                `json:"serviceConnectDefaults,omitempty"` // not modelled
}

// CreateClusterOutput is the response of CreateCluster.
type CreateClusterOutput struct {
	Cluster *Cluster `json:"cluster,omitempty"`
}

// DescribeClustersInput is the body of DescribeClusters.
type DescribeClustersInput struct {
	Clusters []string `json:"clusters,omitempty"`
	Include  []string `json:"include,omitempty"` // ClusterField: ATTACHMENTS, CONFIGURATIONS, SETTINGS, STATISTICS, TAGS
}

// DescribeClustersOutput is the response of DescribeClusters.
type DescribeClustersOutput struct {
	Clusters List[Cluster] `json:"clusters"`
	Failures List[Failure] `json:"failures"`
}

// ListClustersInput is the body of ListClusters.
type ListClustersInput struct {
	NextToken  *string `json:"nextToken,omitempty"`
	MaxResults *int32  `json:"maxResults,omitempty"`
}

// ListClustersOutput is the response of ListClusters.
type ListClustersOutput struct {
	ClusterArns List[string] `json:"clusterArns"`
	NextToken   *string      `json:"nextToken,omitempty"`
}

// DeleteClusterInput is the body of DeleteCluster.
type DeleteClusterInput struct {
	Cluster *string `json:"cluster,omitempty"` // required
}

// DeleteClusterOutput is the response of DeleteCluster.
type DeleteClusterOutput struct {
	Cluster *Cluster `json:"cluster,omitempty"`
}

// Cluster is an ECS cluster. The model's configuration and
// serviceConnectDefaults members are left out.
type Cluster struct {
	ClusterArn                        *string                            `json:"clusterArn,omitempty"`
	ClusterName                       *string                            `json:"clusterName,omitempty"`
	Status                            *string                            `json:"status,omitempty"` // ACTIVE, PROVISIONING, DEPROVISIONING, FAILED, INACTIVE
	RegisteredContainerInstancesCount int32                              `json:"registeredContainerInstancesCount"`
	RunningTasksCount                 int32                              `json:"runningTasksCount"`
	PendingTasksCount                 int32                              `json:"pendingTasksCount"`
	ActiveServicesCount               int32                              `json:"activeServicesCount"`
	Statistics                        List[KeyValuePair]                 `json:"statistics"`
	Tags                              List[Tag]                          `json:"tags"`
	Settings                          List[ClusterSetting]               `json:"settings"`
	CapacityProviders                 []string                           `json:"capacityProviders,omitempty"`
	DefaultCapacityProviderStrategy   List[CapacityProviderStrategyItem] `json:"defaultCapacityProviderStrategy"`
	Attachments                       []Attachment                       `json:"attachments,omitempty"`
	AttachmentsStatus                 *string                            `json:"attachmentsStatus,omitempty"`
}

// ClusterSetting is a cluster setting; the only name is "containerInsights".
type ClusterSetting struct {
	Name  string  `json:"name,omitempty"`
	Value *string `json:"value,omitempty"`
}

// CapacityProviderStrategyItem is one entry of a capacity provider strategy.
type CapacityProviderStrategyItem struct {
	CapacityProvider *string `json:"capacityProvider,omitempty"` // required
	Weight           int32   `json:"weight"`
	Base             int32   `json:"base"`
}

// ---------------------------------------------------------------------------
// Common shapes

// Failure reports one resource a batch operation could not act on.
type Failure struct {
	Arn    *string `json:"arn,omitempty"`
	Reason *string `json:"reason,omitempty"`
	Detail *string `json:"detail,omitempty"`
}

// Tag is an ECS resource tag (ECS tags are lists; EKS tags are maps).
type Tag struct {
	Key   *string `json:"key,omitempty"`
	Value *string `json:"value,omitempty"`
}

// KeyValuePair is used for environment variables, statistics, attachment
// details and proxy properties.
type KeyValuePair struct {
	Name  *string `json:"name,omitempty"`
	Value *string `json:"value,omitempty"`
}

// Attribute is a task or task definition attribute.
type Attribute struct {
	Name       *string `json:"name,omitempty"` // required
	Value      *string `json:"value,omitempty"`
	TargetType string  `json:"targetType,omitempty"` // "container-instance"
	TargetID   *string `json:"targetId,omitempty"`
}

// Attachment is an elastic network interface (or other resource) attached to
// a task or cluster; details carry e.g. subnetId, networkInterfaceId,
// privateIPv4Address.
type Attachment struct {
	ID      *string        `json:"id,omitempty"`
	Type    *string        `json:"type,omitempty"` // e.g. "ElasticNetworkInterface"
	Status  *string        `json:"status,omitempty"`
	Details []KeyValuePair `json:"details,omitempty"`
}

// NetworkConfiguration is a task's or service's network configuration.
type NetworkConfiguration struct {
	AwsvpcConfiguration *AwsVpcConfiguration `json:"awsvpcConfiguration,omitempty"`
}

// AwsVpcConfiguration places a task in subnets with security groups.
type AwsVpcConfiguration struct {
	Subnets        []string `json:"subnets,omitempty"` // required
	SecurityGroups []string `json:"securityGroups,omitempty"`
	AssignPublicIP string   `json:"assignPublicIp,omitempty"` // ENABLED, DISABLED
}

// PlacementStrategy is accepted for completeness; Fargate ignores it.
type PlacementStrategy struct {
	Type  string  `json:"type,omitempty"` // random, spread, binpack
	Field *string `json:"field,omitempty"`
}

// PlacementConstraint is accepted for completeness; Fargate ignores it.
type PlacementConstraint struct {
	Type       string  `json:"type,omitempty"` // distinctInstance, memberOf
	Expression *string `json:"expression,omitempty"`
}

// TaskDefinitionPlacementConstraint is a placement constraint in a task
// definition.
type TaskDefinitionPlacementConstraint struct {
	Type       string  `json:"type,omitempty"` // memberOf
	Expression *string `json:"expression,omitempty"`
}

// ---------------------------------------------------------------------------
// Task definitions

// RegisterTaskDefinitionInput is the body of RegisterTaskDefinition.
type RegisterTaskDefinitionInput struct {
	Family                  *string                             `json:"family,omitempty"` // required
	TaskRoleArn             *string                             `json:"taskRoleArn,omitempty"`
	ExecutionRoleArn        *string                             `json:"executionRoleArn,omitempty"`
	NetworkMode             string                              `json:"networkMode,omitempty"`
	ContainerDefinitions    []ContainerDefinition               `json:"containerDefinitions,omitempty"` // required
	Volumes                 []Volume                            `json:"volumes,omitempty"`
	PlacementConstraints    []TaskDefinitionPlacementConstraint `json:"placementConstraints,omitempty"`
	RequiresCompatibilities []string                            `json:"requiresCompatibilities,omitempty"`
	Cpu                     *string                             `json:"cpu,omitempty"`
	Memory                  *string                             `json:"memory,omitempty"`
	Tags                    []Tag                               `json:"tags,omitempty"`
	PidMode                 string                              `json:"pidMode,omitempty"`
	IpcMode                 string                              `json:"ipcMode,omitempty"`
	ProxyConfiguration      *ProxyConfiguration                 `json:"proxyConfiguration,omitempty"`
	InferenceAccelerators   []InferenceAccelerator              `json:"inferenceAccelerators,omitempty"`
	EphemeralStorage        *EphemeralStorage                   `json:"ephemeralStorage,omitempty"`
	RuntimePlatform         *RuntimePlatform                    `json:"runtimePlatform,omitempty"`
	EnableFaultInjection    *bool                               `json:"enableFaultInjection,omitempty"`
}

// RegisterTaskDefinitionOutput is the response of RegisterTaskDefinition.
type RegisterTaskDefinitionOutput struct {
	TaskDefinition *TaskDefinition `json:"taskDefinition,omitempty"`
	Tags           []Tag           `json:"tags,omitempty"`
}

// DescribeTaskDefinitionInput is the body of DescribeTaskDefinition.
type DescribeTaskDefinitionInput struct {
	TaskDefinition *string  `json:"taskDefinition,omitempty"` // required: family, family:revision or ARN
	Include        []string `json:"include,omitempty"`        // TAGS
}

// DescribeTaskDefinitionOutput is the response of DescribeTaskDefinition.
type DescribeTaskDefinitionOutput struct {
	TaskDefinition *TaskDefinition `json:"taskDefinition,omitempty"`
	Tags           List[Tag]       `json:"tags"`
}

// ListTaskDefinitionsInput is the body of ListTaskDefinitions.
type ListTaskDefinitionsInput struct {
	FamilyPrefix *string `json:"familyPrefix,omitempty"`
	Status       string  `json:"status,omitempty"` // ACTIVE, INACTIVE
	Sort         string  `json:"sort,omitempty"`   // ASC, DESC
	NextToken    *string `json:"nextToken,omitempty"`
	MaxResults   *int32  `json:"maxResults,omitempty"`
}

// ListTaskDefinitionsOutput is the response of ListTaskDefinitions.
type ListTaskDefinitionsOutput struct {
	TaskDefinitionArns List[string] `json:"taskDefinitionArns"`
	NextToken          *string      `json:"nextToken,omitempty"`
}

// ListTaskDefinitionFamiliesInput is the body of ListTaskDefinitionFamilies.
type ListTaskDefinitionFamiliesInput struct {
	FamilyPrefix *string `json:"familyPrefix,omitempty"`
	Status       string  `json:"status,omitempty"` // ACTIVE, INACTIVE, ALL
	NextToken    *string `json:"nextToken,omitempty"`
	MaxResults   *int32  `json:"maxResults,omitempty"`
}

// ListTaskDefinitionFamiliesOutput is the response of
// ListTaskDefinitionFamilies.
type ListTaskDefinitionFamiliesOutput struct {
	Families  List[string] `json:"families"`
	NextToken *string      `json:"nextToken,omitempty"`
}

// DeregisterTaskDefinitionInput is the body of DeregisterTaskDefinition.
type DeregisterTaskDefinitionInput struct {
	TaskDefinition *string `json:"taskDefinition,omitempty"` // required: family:revision or ARN
}

// DeregisterTaskDefinitionOutput is the response of DeregisterTaskDefinition.
type DeregisterTaskDefinitionOutput struct {
	TaskDefinition *TaskDefinition `json:"taskDefinition,omitempty"`
}

// TaskDefinition is a registered task definition revision.
type TaskDefinition struct {
	TaskDefinitionArn       *string                                 `json:"taskDefinitionArn,omitempty"`
	ContainerDefinitions    []ContainerDefinition                   `json:"containerDefinitions,omitempty"`
	Family                  *string                                 `json:"family,omitempty"`
	TaskRoleArn             *string                                 `json:"taskRoleArn,omitempty"`
	ExecutionRoleArn        *string                                 `json:"executionRoleArn,omitempty"`
	NetworkMode             string                                  `json:"networkMode,omitempty"`
	Revision                int32                                   `json:"revision"`
	Volumes                 List[Volume]                            `json:"volumes"`
	Status                  string                                  `json:"status,omitempty"` // ACTIVE, INACTIVE
	RequiresAttributes      []Attribute                             `json:"requiresAttributes,omitempty"`
	PlacementConstraints    List[TaskDefinitionPlacementConstraint] `json:"placementConstraints"`
	Compatibilities         []string                                `json:"compatibilities,omitempty"`
	RuntimePlatform         *RuntimePlatform                        `json:"runtimePlatform,omitempty"`
	RequiresCompatibilities []string                                `json:"requiresCompatibilities,omitempty"`
	Cpu                     *string                                 `json:"cpu,omitempty"`
	Memory                  *string                                 `json:"memory,omitempty"`
	InferenceAccelerators   []InferenceAccelerator                  `json:"inferenceAccelerators,omitempty"`
	PidMode                 string                                  `json:"pidMode,omitempty"`
	IpcMode                 string                                  `json:"ipcMode,omitempty"`
	ProxyConfiguration      *ProxyConfiguration                     `json:"proxyConfiguration,omitempty"`
	RegisteredAt            *Timestamp                              `json:"registeredAt,omitempty"`
	DeregisteredAt          *Timestamp                              `json:"deregisteredAt,omitempty"`
	RegisteredBy            *string                                 `json:"registeredBy,omitempty"`
	EphemeralStorage        *EphemeralStorage                       `json:"ephemeralStorage,omitempty"`
}

// ContainerDefinition describes one container of a task definition. All the
// model's members are here.
type ContainerDefinition struct {
	Name                   *string                 `json:"name,omitempty"`
	Image                  *string                 `json:"image,omitempty"`
	RepositoryCredentials  *RepositoryCredentials  `json:"repositoryCredentials,omitempty"`
	Cpu                    int32                   `json:"cpu"` // non-boxed Integer: CPU units, 0 = unset
	Memory                 *int32                  `json:"memory,omitempty"`
	MemoryReservation      *int32                  `json:"memoryReservation,omitempty"`
	Links                  []string                `json:"links,omitempty"`
	PortMappings           []PortMapping           `json:"portMappings,omitempty"`
	Essential              *bool                   `json:"essential,omitempty"`
	EntryPoint             []string                `json:"entryPoint,omitempty"`
	Command                []string                `json:"command,omitempty"`
	Environment            []KeyValuePair          `json:"environment,omitempty"`
	EnvironmentFiles       []EnvironmentFile       `json:"environmentFiles,omitempty"`
	MountPoints            List[MountPoint]        `json:"mountPoints"`
	VolumesFrom            List[VolumeFrom]        `json:"volumesFrom"`
	LinuxParameters        *LinuxParameters        `json:"linuxParameters,omitempty"`
	Secrets                []Secret                `json:"secrets,omitempty"`
	DependsOn              []ContainerDependency   `json:"dependsOn,omitempty"`
	StartTimeout           *int32                  `json:"startTimeout,omitempty"`
	StopTimeout            *int32                  `json:"stopTimeout,omitempty"`
	Hostname               *string                 `json:"hostname,omitempty"`
	User                   *string                 `json:"user,omitempty"`
	WorkingDirectory       *string                 `json:"workingDirectory,omitempty"`
	DisableNetworking      *bool                   `json:"disableNetworking,omitempty"`
	Privileged             *bool                   `json:"privileged,omitempty"`
	ReadonlyRootFilesystem *bool                   `json:"readonlyRootFilesystem,omitempty"`
	DNSServers             []string                `json:"dnsServers,omitempty"`
	DNSSearchDomains       []string                `json:"dnsSearchDomains,omitempty"`
	ExtraHosts             []HostEntry             `json:"extraHosts,omitempty"`
	DockerSecurityOptions  []string                `json:"dockerSecurityOptions,omitempty"`
	Interactive            *bool                   `json:"interactive,omitempty"`
	PseudoTerminal         *bool                   `json:"pseudoTerminal,omitempty"`
	DockerLabels           map[string]string       `json:"dockerLabels,omitempty"`
	Ulimits                []Ulimit                `json:"ulimits,omitempty"`
	LogConfiguration       *LogConfiguration       `json:"logConfiguration,omitempty"`
	HealthCheck            *HealthCheck            `json:"healthCheck,omitempty"`
	SystemControls         []SystemControl         `json:"systemControls,omitempty"`
	ResourceRequirements   []ResourceRequirement   `json:"resourceRequirements,omitempty"`
	FirelensConfiguration  *FirelensConfiguration  `json:"firelensConfiguration,omitempty"`
	CredentialSpecs        []string                `json:"credentialSpecs,omitempty"`
	RestartPolicy          *ContainerRestartPolicy `json:"restartPolicy,omitempty"`
	VersionConsistency     string                  `json:"versionConsistency,omitempty"` // enabled, disabled
}

// ContainerRestartPolicy is a container's restartPolicy.
type ContainerRestartPolicy struct {
	Enabled              *bool   `json:"enabled,omitempty"` // required
	IgnoredExitCodes     []int32 `json:"ignoredExitCodes,omitempty"`
	RestartAttemptPeriod *int32  `json:"restartAttemptPeriod,omitempty"`
}

// RepositoryCredentials names the secret holding private registry
// credentials.
type RepositoryCredentials struct {
	CredentialsParameter *string `json:"credentialsParameter,omitempty"` // required
}

// PortMapping maps a container port.
type PortMapping struct {
	ContainerPort      *int32  `json:"containerPort,omitempty"`
	HostPort           *int32  `json:"hostPort,omitempty"`
	Protocol           string  `json:"protocol,omitempty"` // tcp, udp
	Name               *string `json:"name,omitempty"`
	AppProtocol        string  `json:"appProtocol,omitempty"` // http, http2, grpc
	ContainerPortRange *string `json:"containerPortRange,omitempty"`
}

// EnvironmentFile is an environment file to load (type "s3").
type EnvironmentFile struct {
	Value *string `json:"value,omitempty"` // required
	Type  string  `json:"type,omitempty"`  // required: s3
}

// MountPoint mounts a task volume into a container.
type MountPoint struct {
	SourceVolume  *string `json:"sourceVolume,omitempty"`
	ContainerPath *string `json:"containerPath,omitempty"`
	ReadOnly      *bool   `json:"readOnly,omitempty"`
}

// VolumeFrom mounts all volumes of another container.
type VolumeFrom struct {
	SourceContainer *string `json:"sourceContainer,omitempty"`
	ReadOnly        *bool   `json:"readOnly,omitempty"`
}

// LinuxParameters are Linux-specific container options.
type LinuxParameters struct {
	Capabilities       *KernelCapabilities `json:"capabilities,omitempty"`
	Devices            []Device            `json:"devices,omitempty"`
	InitProcessEnabled *bool               `json:"initProcessEnabled,omitempty"`
	SharedMemorySize   *int32              `json:"sharedMemorySize,omitempty"`
	Tmpfs              []Tmpfs             `json:"tmpfs,omitempty"`
	MaxSwap            *int32              `json:"maxSwap,omitempty"`
	Swappiness         *int32              `json:"swappiness,omitempty"`
}

// KernelCapabilities adds and drops Linux capabilities (names without the
// CAP_ prefix, e.g. "SYS_PTRACE").
type KernelCapabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

// Device exposes a host device to the container.
type Device struct {
	HostPath      *string  `json:"hostPath,omitempty"` // required
	ContainerPath *string  `json:"containerPath,omitempty"`
	Permissions   []string `json:"permissions,omitempty"` // read, write, mknod
}

// Tmpfs mounts a tmpfs into the container; size is in MiB.
type Tmpfs struct {
	ContainerPath *string  `json:"containerPath,omitempty"` // required
	Size          int32    `json:"size"`                    // required
	MountOptions  []string `json:"mountOptions,omitempty"`
}

// Secret injects a secret as an environment variable.
type Secret struct {
	Name      *string `json:"name,omitempty"`      // required
	ValueFrom *string `json:"valueFrom,omitempty"` // required
}

// ContainerDependency orders container start-up within a task.
type ContainerDependency struct {
	ContainerName *string `json:"containerName,omitempty"` // required
	Condition     string  `json:"condition,omitempty"`     // required: START, COMPLETE, SUCCESS, HEALTHY
}

// HostEntry is an /etc/hosts entry.
type HostEntry struct {
	Hostname  *string `json:"hostname,omitempty"`  // required
	IPAddress *string `json:"ipAddress,omitempty"` // required
}

// Ulimit is a resource limit.
type Ulimit struct {
	Name      string `json:"name,omitempty"` // required: core, cpu, nofile, ...
	SoftLimit int32  `json:"softLimit"`      // required
	HardLimit int32  `json:"hardLimit"`      // required
}

// LogConfiguration selects a log driver.
type LogConfiguration struct {
	LogDriver     string            `json:"logDriver,omitempty"` // required: awslogs, json-file, ...
	Options       map[string]string `json:"options,omitempty"`
	SecretOptions []Secret          `json:"secretOptions,omitempty"`
}

// HealthCheck is a container health check; times are in seconds.
type HealthCheck struct {
	Command     []string `json:"command,omitempty"` // required, e.g. ["CMD-SHELL", "curl -f http://localhost/"]
	Interval    *int32   `json:"interval,omitempty"`
	Timeout     *int32   `json:"timeout,omitempty"`
	Retries     *int32   `json:"retries,omitempty"`
	StartPeriod *int32   `json:"startPeriod,omitempty"`
}

// SystemControl is a namespaced kernel parameter (sysctl).
type SystemControl struct {
	Namespace *string `json:"namespace,omitempty"`
	Value     *string `json:"value,omitempty"`
}

// ResourceRequirement asks for GPUs or an inference accelerator.
type ResourceRequirement struct {
	Value *string `json:"value,omitempty"` // required
	Type  string  `json:"type,omitempty"`  // required: GPU, InferenceAccelerator
}

// FirelensConfiguration configures a FireLens log router container.
type FirelensConfiguration struct {
	Type    string            `json:"type,omitempty"` // required: fluentd, fluentbit
	Options map[string]string `json:"options,omitempty"`
}

// Volume is a task definition volume. The model has no ephemeral-volume
// member: a Volume without host (and without the other configurations) is a
// task-scoped scratch volume. The docker, EFS and FSx configurations are not
// modelled.
type Volume struct {
	Name                                    *string               `json:"name,omitempty"`
	Host                                    *HostVolumeProperties `json:"host,omitempty"`
	DockerVolumeConfiguration               json.RawMessage       `json:"dockerVolumeConfiguration,omitempty"`
	EfsVolumeConfiguration                  json.RawMessage       `json:"efsVolumeConfiguration,omitempty"`
	FsxWindowsFileServerVolumeConfiguration json.RawMessage       `json:"fsxWindowsFileServerVolumeConfiguration,omitempty"`
	ConfiguredAtLaunch                      *bool                 `json:"configuredAtLaunch,omitempty"`
}

// HostVolumeProperties is a bind mount from the host.
type HostVolumeProperties struct {
	SourcePath *string `json:"sourcePath,omitempty"`
}

// EphemeralStorage is the task's ephemeral storage size in GiB.
type EphemeralStorage struct {
	SizeInGiB int32 `json:"sizeInGiB"` // required
}

// RuntimePlatform selects CPU architecture and OS family.
type RuntimePlatform struct {
	CpuArchitecture       string `json:"cpuArchitecture,omitempty"`       // X86_64, ARM64
	OperatingSystemFamily string `json:"operatingSystemFamily,omitempty"` // LINUX, WINDOWS_SERVER_...
}

// ProxyConfiguration is an App Mesh proxy configuration.
type ProxyConfiguration struct {
	Type          string         `json:"type,omitempty"`          // APPMESH
	ContainerName *string        `json:"containerName,omitempty"` // required
	Properties    []KeyValuePair `json:"properties,omitempty"`
}

// InferenceAccelerator is an Elastic Inference accelerator.
type InferenceAccelerator struct {
	DeviceName *string `json:"deviceName,omitempty"` // required
	DeviceType *string `json:"deviceType,omitempty"` // required
}

// ---------------------------------------------------------------------------
// Tasks

// RunTaskInput is the body of RunTask.
type RunTaskInput struct {
	CapacityProviderStrategy []CapacityProviderStrategyItem `json:"capacityProviderStrategy,omitempty"`
	Cluster                  *string                        `json:"cluster,omitempty"`
	Count                    *int32                         `json:"count,omitempty"`
	EnableECSManagedTags     bool                           `json:"enableECSManagedTags,omitempty"`
	EnableExecuteCommand     bool                           `json:"enableExecuteCommand,omitempty"`
	Group                    *string                        `json:"group,omitempty"`
	LaunchType               string                         `json:"launchType,omitempty"`
	NetworkConfiguration     *NetworkConfiguration          `json:"networkConfiguration,omitempty"`
	Overrides                *TaskOverride                  `json:"overrides,omitempty"`
	PlacementConstraints     []PlacementConstraint          `json:"placementConstraints,omitempty"`
	PlacementStrategy        []PlacementStrategy            `json:"placementStrategy,omitempty"`
	PlatformVersion          *string                        `json:"platformVersion,omitempty"`
	PropagateTags            string                         `json:"propagateTags,omitempty"` // TASK_DEFINITION, SERVICE, NONE
	ReferenceID              *string                        `json:"referenceId,omitempty"`
	StartedBy                *string                        `json:"startedBy,omitempty"`
	Tags                     []Tag                          `json:"tags,omitempty"`
	TaskDefinition           *string                        `json:"taskDefinition,omitempty"` // required

	// Newer than the installed botocore model, present in aws-sdk-go-v2's:
	// the SDK fills clientToken (an idempotency token) on every RunTask.
	ClientToken          *string         `json:"clientToken,omitempty"`
	VolumeConfigurations json.RawMessage `json:"volumeConfigurations,omitempty"` // not modelled
}

// RunTaskOutput is the response of RunTask.
type RunTaskOutput struct {
	Tasks    List[Task]    `json:"tasks"`
	Failures List[Failure] `json:"failures"`
}

// StopTaskInput is the body of StopTask.
type StopTaskInput struct {
	Cluster *string `json:"cluster,omitempty"`
	Task    *string `json:"task,omitempty"` // required: task ID or ARN
	Reason  *string `json:"reason,omitempty"`
}

// StopTaskOutput is the response of StopTask.
type StopTaskOutput struct {
	Task *Task `json:"task,omitempty"`
}

// DescribeTasksInput is the body of DescribeTasks.
type DescribeTasksInput struct {
	Cluster *string  `json:"cluster,omitempty"`
	Tasks   []string `json:"tasks,omitempty"`   // required
	Include []string `json:"include,omitempty"` // TAGS
}

// DescribeTasksOutput is the response of DescribeTasks.
type DescribeTasksOutput struct {
	Tasks    List[Task]    `json:"tasks"`
	Failures List[Failure] `json:"failures"`
}

// ListTasksInput is the body of ListTasks.
type ListTasksInput struct {
	Cluster           *string `json:"cluster,omitempty"`
	ContainerInstance *string `json:"containerInstance,omitempty"`
	Family            *string `json:"family,omitempty"`
	NextToken         *string `json:"nextToken,omitempty"`
	MaxResults        *int32  `json:"maxResults,omitempty"`
	StartedBy         *string `json:"startedBy,omitempty"`
	ServiceName       *string `json:"serviceName,omitempty"`
	DesiredStatus     string  `json:"desiredStatus,omitempty"` // RUNNING, PENDING, STOPPED
	LaunchType        string  `json:"launchType,omitempty"`
}

// ListTasksOutput is the response of ListTasks.
type ListTasksOutput struct {
	TaskArns  List[string] `json:"taskArns"`
	NextToken *string      `json:"nextToken,omitempty"`
}

// Task is a running or stopped task: every member of the model's Task shape.
type Task struct {
	Attachments           []Attachment           `json:"attachments,omitempty"`
	Attributes            []Attribute            `json:"attributes,omitempty"`
	AvailabilityZone      *string                `json:"availabilityZone,omitempty"`
	CapacityProviderName  *string                `json:"capacityProviderName,omitempty"`
	ClusterArn            *string                `json:"clusterArn,omitempty"`
	Connectivity          string                 `json:"connectivity,omitempty"` // CONNECTED, DISCONNECTED
	ConnectivityAt        *Timestamp             `json:"connectivityAt,omitempty"`
	ContainerInstanceArn  *string                `json:"containerInstanceArn,omitempty"`
	Containers            []Container            `json:"containers,omitempty"`
	Cpu                   *string                `json:"cpu,omitempty"`
	CreatedAt             *Timestamp             `json:"createdAt,omitempty"`
	DesiredStatus         *string                `json:"desiredStatus,omitempty"` // a free string in the model: RUNNING, STOPPED
	EnableExecuteCommand  bool                   `json:"enableExecuteCommand"`
	ExecutionStoppedAt    *Timestamp             `json:"executionStoppedAt,omitempty"`
	Group                 *string                `json:"group,omitempty"`
	HealthStatus          string                 `json:"healthStatus,omitempty"` // HEALTHY, UNHEALTHY, UNKNOWN
	InferenceAccelerators []InferenceAccelerator `json:"inferenceAccelerators,omitempty"`
	LastStatus            *string                `json:"lastStatus,omitempty"` // a free string in the model: TaskStatus* constants
	LaunchType            string                 `json:"launchType,omitempty"`
	Memory                *string                `json:"memory,omitempty"`
	Overrides             *TaskOverride          `json:"overrides,omitempty"`
	PlatformVersion       *string                `json:"platformVersion,omitempty"`
	PlatformFamily        *string                `json:"platformFamily,omitempty"`
	PullStartedAt         *Timestamp             `json:"pullStartedAt,omitempty"`
	PullStoppedAt         *Timestamp             `json:"pullStoppedAt,omitempty"`
	StartedAt             *Timestamp             `json:"startedAt,omitempty"`
	StartedBy             *string                `json:"startedBy,omitempty"`
	StopCode              string                 `json:"stopCode,omitempty"` // TaskStopCode* constants
	StoppedAt             *Timestamp             `json:"stoppedAt,omitempty"`
	StoppedReason         *string                `json:"stoppedReason,omitempty"`
	StoppingAt            *Timestamp             `json:"stoppingAt,omitempty"`
	Tags                  List[Tag]              `json:"tags"`
	TaskArn               *string                `json:"taskArn,omitempty"`
	TaskDefinitionArn     *string                `json:"taskDefinitionArn,omitempty"`
	Version               int64                  `json:"version"`
	EphemeralStorage      *EphemeralStorage      `json:"ephemeralStorage,omitempty"`
}

// Container is a container of a task as it runs. Note that cpu, memory and
// memoryReservation are strings here, unlike in ContainerDefinition.
type Container struct {
	ContainerArn      *string                `json:"containerArn,omitempty"`
	TaskArn           *string                `json:"taskArn,omitempty"`
	Name              *string                `json:"name,omitempty"`
	Image             *string                `json:"image,omitempty"`
	ImageDigest       *string                `json:"imageDigest,omitempty"`
	RuntimeID         *string                `json:"runtimeId,omitempty"`
	LastStatus        *string                `json:"lastStatus,omitempty"`
	ExitCode          *int32                 `json:"exitCode,omitempty"`
	Reason            *string                `json:"reason,omitempty"`
	NetworkBindings   List[NetworkBinding]   `json:"networkBindings"`
	NetworkInterfaces List[NetworkInterface] `json:"networkInterfaces"`
	HealthStatus      string                 `json:"healthStatus,omitempty"`
	ManagedAgents     []ManagedAgent         `json:"managedAgents,omitempty"`
	Cpu               *string                `json:"cpu,omitempty"`
	Memory            *string                `json:"memory,omitempty"`
	MemoryReservation *string                `json:"memoryReservation,omitempty"`
	GpuIDs            []string               `json:"gpuIds,omitempty"`
}

// NetworkBinding is a port binding of a container.
type NetworkBinding struct {
	BindIP             *string `json:"bindIP,omitempty"`
	ContainerPort      *int32  `json:"containerPort,omitempty"`
	HostPort           *int32  `json:"hostPort,omitempty"`
	Protocol           string  `json:"protocol,omitempty"`
	ContainerPortRange *string `json:"containerPortRange,omitempty"`
	HostPortRange      *string `json:"hostPortRange,omitempty"`
}

// NetworkInterface is a container's network interface in awsvpc mode.
type NetworkInterface struct {
	AttachmentID       *string `json:"attachmentId,omitempty"`
	PrivateIpv4Address *string `json:"privateIpv4Address,omitempty"`
	Ipv6Address        *string `json:"ipv6Address,omitempty"`
}

// ManagedAgent is an agent (ExecuteCommandAgent) running in a container.
type ManagedAgent struct {
	LastStartedAt *Timestamp `json:"lastStartedAt,omitempty"`
	Name          string     `json:"name,omitempty"`
	Reason        *string    `json:"reason,omitempty"`
	LastStatus    *string    `json:"lastStatus,omitempty"`
}

// TaskOverride overrides parts of the task definition for one RunTask.
type TaskOverride struct {
	ContainerOverrides            List[ContainerOverride]            `json:"containerOverrides"`
	Cpu                           *string                            `json:"cpu,omitempty"`
	InferenceAcceleratorOverrides List[InferenceAcceleratorOverride] `json:"inferenceAcceleratorOverrides"`
	ExecutionRoleArn              *string                            `json:"executionRoleArn,omitempty"`
	Memory                        *string                            `json:"memory,omitempty"`
	TaskRoleArn                   *string                            `json:"taskRoleArn,omitempty"`
	EphemeralStorage              *EphemeralStorage                  `json:"ephemeralStorage,omitempty"`
}

// ContainerOverride overrides one container's settings, found by name.
type ContainerOverride struct {
	Name                 *string               `json:"name,omitempty"`
	Command              []string              `json:"command,omitempty"`
	Environment          []KeyValuePair        `json:"environment,omitempty"`
	EnvironmentFiles     []EnvironmentFile     `json:"environmentFiles,omitempty"`
	Cpu                  *int32                `json:"cpu,omitempty"`
	Memory               *int32                `json:"memory,omitempty"`
	MemoryReservation    *int32                `json:"memoryReservation,omitempty"`
	ResourceRequirements []ResourceRequirement `json:"resourceRequirements,omitempty"`
}

// InferenceAcceleratorOverride overrides an inference accelerator.
type InferenceAcceleratorOverride struct {
	DeviceName *string `json:"deviceName,omitempty"`
	DeviceType *string `json:"deviceType,omitempty"`
}

// ---------------------------------------------------------------------------
// Services

// CreateServiceInput is the body of CreateService.
type CreateServiceInput struct {
	Cluster                       *string                        `json:"cluster,omitempty"`
	ServiceName                   *string                        `json:"serviceName,omitempty"` // required
	TaskDefinition                *string                        `json:"taskDefinition,omitempty"`
	LoadBalancers                 []LoadBalancer                 `json:"loadBalancers,omitempty"`
	ServiceRegistries             []ServiceRegistry              `json:"serviceRegistries,omitempty"`
	DesiredCount                  *int32                         `json:"desiredCount,omitempty"`
	ClientToken                   *string                        `json:"clientToken,omitempty"`
	LaunchType                    string                         `json:"launchType,omitempty"`
	CapacityProviderStrategy      []CapacityProviderStrategyItem `json:"capacityProviderStrategy,omitempty"`
	PlatformVersion               *string                        `json:"platformVersion,omitempty"`
	Role                          *string                        `json:"role,omitempty"`
	DeploymentConfiguration       *DeploymentConfiguration       `json:"deploymentConfiguration,omitempty"`
	PlacementConstraints          []PlacementConstraint          `json:"placementConstraints,omitempty"`
	PlacementStrategy             []PlacementStrategy            `json:"placementStrategy,omitempty"`
	NetworkConfiguration          *NetworkConfiguration          `json:"networkConfiguration,omitempty"`
	HealthCheckGracePeriodSeconds *int32                         `json:"healthCheckGracePeriodSeconds,omitempty"`
	SchedulingStrategy            string                         `json:"schedulingStrategy,omitempty"` // REPLICA, DAEMON
	DeploymentController          *DeploymentController          `json:"deploymentController,omitempty"`
	Tags                          []Tag                          `json:"tags,omitempty"`
	EnableECSManagedTags          bool                           `json:"enableECSManagedTags,omitempty"`
	PropagateTags                 string                         `json:"propagateTags,omitempty"`
	EnableExecuteCommand          bool                           `json:"enableExecuteCommand,omitempty"`
	ServiceConnectConfiguration   json.RawMessage                `json:"serviceConnectConfiguration,omitempty"` // not modelled
}

// CreateServiceOutput is the response of CreateService.
type CreateServiceOutput struct {
	Service *Service `json:"service,omitempty"`
}

// UpdateServiceInput is the body of UpdateService. Unlike CreateService,
// enableExecuteCommand and enableECSManagedTags are boxed here.
type UpdateServiceInput struct {
	Cluster                       *string                        `json:"cluster,omitempty"`
	Service                       *string                        `json:"service,omitempty"` // required
	DesiredCount                  *int32                         `json:"desiredCount,omitempty"`
	TaskDefinition                *string                        `json:"taskDefinition,omitempty"`
	CapacityProviderStrategy      []CapacityProviderStrategyItem `json:"capacityProviderStrategy,omitempty"`
	DeploymentConfiguration       *DeploymentConfiguration       `json:"deploymentConfiguration,omitempty"`
	NetworkConfiguration          *NetworkConfiguration          `json:"networkConfiguration,omitempty"`
	PlacementConstraints          []PlacementConstraint          `json:"placementConstraints,omitempty"`
	PlacementStrategy             []PlacementStrategy            `json:"placementStrategy,omitempty"`
	PlatformVersion               *string                        `json:"platformVersion,omitempty"`
	ForceNewDeployment            bool                           `json:"forceNewDeployment,omitempty"`
	HealthCheckGracePeriodSeconds *int32                         `json:"healthCheckGracePeriodSeconds,omitempty"`
	EnableExecuteCommand          *bool                          `json:"enableExecuteCommand,omitempty"`
	EnableECSManagedTags          *bool                          `json:"enableECSManagedTags,omitempty"`
	LoadBalancers                 []LoadBalancer                 `json:"loadBalancers,omitempty"`
	PropagateTags                 string                         `json:"propagateTags,omitempty"`
	ServiceRegistries             []ServiceRegistry              `json:"serviceRegistries,omitempty"`
	ServiceConnectConfiguration   json.RawMessage                `json:"serviceConnectConfiguration,omitempty"` // not modelled
}

// UpdateServiceOutput is the response of UpdateService.
type UpdateServiceOutput struct {
	Service *Service `json:"service,omitempty"`
}

// DeleteServiceInput is the body of DeleteService.
type DeleteServiceInput struct {
	Cluster *string `json:"cluster,omitempty"`
	Service *string `json:"service,omitempty"` // required
	Force   *bool   `json:"force,omitempty"`
}

// DeleteServiceOutput is the response of DeleteService.
type DeleteServiceOutput struct {
	Service *Service `json:"service,omitempty"`
}

// DescribeServicesInput is the body of DescribeServices.
type DescribeServicesInput struct {
	Cluster  *string  `json:"cluster,omitempty"`
	Services []string `json:"services,omitempty"` // required
	Include  []string `json:"include,omitempty"`  // TAGS
}

// DescribeServicesOutput is the response of DescribeServices.
type DescribeServicesOutput struct {
	Services List[Service] `json:"services"`
	Failures List[Failure] `json:"failures"`
}

// ListServicesInput is the body of ListServices.
type ListServicesInput struct {
	Cluster            *string `json:"cluster,omitempty"`
	NextToken          *string `json:"nextToken,omitempty"`
	MaxResults         *int32  `json:"maxResults,omitempty"`
	LaunchType         string  `json:"launchType,omitempty"`
	SchedulingStrategy string  `json:"schedulingStrategy,omitempty"`
}

// ListServicesOutput is the response of ListServices.
type ListServicesOutput struct {
	ServiceArns List[string] `json:"serviceArns"`
	NextToken   *string      `json:"nextToken,omitempty"`
}

// Service is a long-running set of tasks kept at a desired count. The
// model's taskSets member is not modelled.
type Service struct {
	ServiceArn                    *string                        `json:"serviceArn,omitempty"`
	ServiceName                   *string                        `json:"serviceName,omitempty"`
	ClusterArn                    *string                        `json:"clusterArn,omitempty"`
	LoadBalancers                 List[LoadBalancer]             `json:"loadBalancers"`
	ServiceRegistries             List[ServiceRegistry]          `json:"serviceRegistries"`
	Status                        *string                        `json:"status,omitempty"` // ACTIVE, DRAINING, INACTIVE
	DesiredCount                  int32                          `json:"desiredCount"`
	RunningCount                  int32                          `json:"runningCount"`
	PendingCount                  int32                          `json:"pendingCount"`
	LaunchType                    string                         `json:"launchType,omitempty"`
	CapacityProviderStrategy      []CapacityProviderStrategyItem `json:"capacityProviderStrategy,omitempty"`
	PlatformVersion               *string                        `json:"platformVersion,omitempty"`
	PlatformFamily                *string                        `json:"platformFamily,omitempty"`
	TaskDefinition                *string                        `json:"taskDefinition,omitempty"`
	DeploymentConfiguration       *DeploymentConfiguration       `json:"deploymentConfiguration,omitempty"`
	TaskSets                      List[json.RawMessage]          `json:"taskSets"` // not modelled
	Deployments                   List[Deployment]               `json:"deployments"`
	RoleArn                       *string                        `json:"roleArn,omitempty"`
	Events                        List[ServiceEvent]             `json:"events"`
	CreatedAt                     *Timestamp                     `json:"createdAt,omitempty"`
	PlacementConstraints          List[PlacementConstraint]      `json:"placementConstraints"`
	PlacementStrategy             List[PlacementStrategy]        `json:"placementStrategy"`
	NetworkConfiguration          *NetworkConfiguration          `json:"networkConfiguration,omitempty"`
	HealthCheckGracePeriodSeconds *int32                         `json:"healthCheckGracePeriodSeconds,omitempty"`
	SchedulingStrategy            string                         `json:"schedulingStrategy,omitempty"`
	DeploymentController          *DeploymentController          `json:"deploymentController,omitempty"`
	Tags                          []Tag                          `json:"tags,omitempty"`
	CreatedBy                     *string                        `json:"createdBy,omitempty"`
	EnableECSManagedTags          bool                           `json:"enableECSManagedTags"`
	PropagateTags                 string                         `json:"propagateTags,omitempty"`
	EnableExecuteCommand          bool                           `json:"enableExecuteCommand"`
}

// Deployment is one rollout of a service's task definition.
type Deployment struct {
	ID                          *string                        `json:"id,omitempty"`
	Status                      *string                        `json:"status,omitempty"` // PRIMARY, ACTIVE, INACTIVE
	TaskDefinition              *string                        `json:"taskDefinition,omitempty"`
	DesiredCount                int32                          `json:"desiredCount"`
	PendingCount                int32                          `json:"pendingCount"`
	RunningCount                int32                          `json:"runningCount"`
	FailedTasks                 int32                          `json:"failedTasks"`
	CreatedAt                   *Timestamp                     `json:"createdAt,omitempty"`
	UpdatedAt                   *Timestamp                     `json:"updatedAt,omitempty"`
	CapacityProviderStrategy    []CapacityProviderStrategyItem `json:"capacityProviderStrategy,omitempty"`
	LaunchType                  string                         `json:"launchType,omitempty"`
	PlatformVersion             *string                        `json:"platformVersion,omitempty"`
	PlatformFamily              *string                        `json:"platformFamily,omitempty"`
	NetworkConfiguration        *NetworkConfiguration          `json:"networkConfiguration,omitempty"`
	RolloutState                string                         `json:"rolloutState,omitempty"` // COMPLETED, FAILED, IN_PROGRESS
	RolloutStateReason          *string                        `json:"rolloutStateReason,omitempty"`
	ServiceConnectConfiguration json.RawMessage                `json:"serviceConnectConfiguration,omitempty"` // not modelled
	ServiceConnectResources     json.RawMessage                `json:"serviceConnectResources,omitempty"`     // not modelled
}

// ServiceEvent is a message in a service's event log.
type ServiceEvent struct {
	ID        *string    `json:"id,omitempty"`
	CreatedAt *Timestamp `json:"createdAt,omitempty"`
	Message   *string    `json:"message,omitempty"`
}

// DeploymentConfiguration bounds how a service rolls out.
type DeploymentConfiguration struct {
	DeploymentCircuitBreaker *DeploymentCircuitBreaker `json:"deploymentCircuitBreaker,omitempty"`
	MaximumPercent           *int32                    `json:"maximumPercent,omitempty"`
	MinimumHealthyPercent    *int32                    `json:"minimumHealthyPercent,omitempty"`
	Alarms                   *DeploymentAlarms         `json:"alarms,omitempty"`
}

// DeploymentCircuitBreaker stops (and optionally rolls back) a failing
// deployment.
type DeploymentCircuitBreaker struct {
	Enable   bool `json:"enable"`   // required
	Rollback bool `json:"rollback"` // required
}

// DeploymentAlarms ties a deployment to CloudWatch alarms.
type DeploymentAlarms struct {
	AlarmNames []string `json:"alarmNames,omitempty"` // required
	Enable     bool     `json:"enable"`               // required
	Rollback   bool     `json:"rollback"`             // required
}

// DeploymentController selects the deployment controller (ECS,
// CODE_DEPLOY, EXTERNAL).
type DeploymentController struct {
	Type string `json:"type,omitempty"` // required
}

// LoadBalancer attaches a service's container port to a target group.
type LoadBalancer struct {
	TargetGroupArn   *string `json:"targetGroupArn,omitempty"`
	LoadBalancerName *string `json:"loadBalancerName,omitempty"`
	ContainerName    *string `json:"containerName,omitempty"`
	ContainerPort    *int32  `json:"containerPort,omitempty"`
}

// ServiceRegistry registers a service's tasks in Cloud Map.
type ServiceRegistry struct {
	RegistryArn   *string `json:"registryArn,omitempty"`
	Port          *int32  `json:"port,omitempty"`
	ContainerName *string `json:"containerName,omitempty"`
	ContainerPort *int32  `json:"containerPort,omitempty"`
}
