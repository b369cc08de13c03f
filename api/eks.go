package api

// EKS speaks REST-JSON: each operation has its own method and path, some
// input members travel in the URI path or the query string rather than the
// body. Those members carry `json:"-"` and a comment naming where they go;
// the API layer fills them from the request URL. Operations (from botocore's
// eks/2017-11-01 model):
//
//	CreateFargateProfile    POST   /clusters/{name}/fargate-profiles
//	DescribeFargateProfile  GET    /clusters/{name}/fargate-profiles/{fargateProfileName}
//	ListFargateProfiles     GET    /clusters/{name}/fargate-profiles?maxResults=&nextToken=
//	DeleteFargateProfile    DELETE /clusters/{name}/fargate-profiles/{fargateProfileName}
//	DescribeCluster         GET    /clusters/{name}
//	ListClusters            GET    /clusters?maxResults=&nextToken=&include=
//
// Body members use their member names as JSON keys (the model gives no
// locationName for body members of these shapes). EKS tags are a map, not
// ECS's list of Tag. Types whose names collide with ECS ones carry an EKS
// prefix.

// EKSError is the body of an EKS error response. The exception name is not in
// the body: the server sends it in the X-Amzn-ErrorType header, with the HTTP
// status the model gives the exception (see the EKS*Exception constants).
// The context members are set where the model's exception shape has them.
type EKSError struct {
	Message            string  `json:"message"`
	ClusterName        *string `json:"clusterName,omitempty"`
	NodegroupName      *string `json:"nodegroupName,omitempty"`
	FargateProfileName *string `json:"fargateProfileName,omitempty"` // only ResourceNotFoundException and InvalidParameterException
	AddonName          *string `json:"addonName,omitempty"`
}

// EKS exception names (the X-Amzn-ErrorType header) with their HTTP status.
const (
	EKSResourceNotFoundException      = "ResourceNotFoundException"      // 404
	EKSInvalidParameterException      = "InvalidParameterException"      // 400
	EKSInvalidRequestException        = "InvalidRequestException"        // 400
	EKSResourceInUseException         = "ResourceInUseException"         // 409
	EKSResourceLimitExceededException = "ResourceLimitExceededException" // 400
	EKSClientException                = "ClientException"                // 400
	EKSServerException                = "ServerException"                // 500
	EKSServiceUnavailableException    = "ServiceUnavailableException"    // 503
	EKSAccessDeniedException          = "AccessDeniedException"          // 403
	EKSThrottlingException            = "ThrottlingException"            // 429, "Rate exceeded" (the EKS model's throttling error)
)

// FargateProfileStatus values (FargateProfile.status).
const (
	FargateProfileStatusCreating     = "CREATING"
	FargateProfileStatusActive       = "ACTIVE"
	FargateProfileStatusDeleting     = "DELETING"
	FargateProfileStatusCreateFailed = "CREATE_FAILED"
	FargateProfileStatusDeleteFailed = "DELETE_FAILED"
)

// EKS ClusterStatus values (EKSCluster.status).
const (
	EKSClusterStatusCreating = "CREATING"
	EKSClusterStatusActive   = "ACTIVE"
	EKSClusterStatusDeleting = "DELETING"
	EKSClusterStatusFailed   = "FAILED"
	EKSClusterStatusUpdating = "UPDATING"
	EKSClusterStatusPending  = "PENDING"
)

// FargateProfileIssueCode values (FargateProfileIssue.code).
const (
	FargateProfileIssuePodExecutionRoleAlreadyInUse = "PodExecutionRoleAlreadyInUse"
	FargateProfileIssueAccessDenied                 = "AccessDenied"
	FargateProfileIssueClusterUnreachable           = "ClusterUnreachable"
	FargateProfileIssueInternalFailure              = "InternalFailure"
)

// ---------------------------------------------------------------------------
// Fargate profiles

// CreateFargateProfileInput is CreateFargateProfile:
// POST /clusters/{name}/fargate-profiles.
type CreateFargateProfileInput struct {
	ClusterName         *string                  `json:"-"`                            // in the URI path: {name}
	FargateProfileName  *string                  `json:"fargateProfileName,omitempty"` // required
	PodExecutionRoleArn *string                  `json:"podExecutionRoleArn,omitempty"`
	Subnets             []string                 `json:"subnets,omitempty"`
	Selectors           []FargateProfileSelector `json:"selectors,omitempty"`
	ClientRequestToken  *string                  `json:"clientRequestToken,omitempty"` // idempotency token; the SDK fills it in
	Tags                map[string]string        `json:"tags,omitempty"`
}

// CreateFargateProfileOutput is the response of CreateFargateProfile.
type CreateFargateProfileOutput struct {
	FargateProfile *FargateProfile `json:"fargateProfile,omitempty"`
}

// DescribeFargateProfileInput is DescribeFargateProfile:
// GET /clusters/{name}/fargate-profiles/{fargateProfileName}. It has no body.
type DescribeFargateProfileInput struct {
	ClusterName        *string `json:"-"` // in the URI path: {name}
	FargateProfileName *string `json:"-"` // in the URI path: {fargateProfileName}
}

// DescribeFargateProfileOutput is the response of DescribeFargateProfile.
type DescribeFargateProfileOutput struct {
	FargateProfile *FargateProfile `json:"fargateProfile,omitempty"`
}

// ListFargateProfilesInput is ListFargateProfiles:
// GET /clusters/{name}/fargate-profiles. It has no body.
type ListFargateProfilesInput struct {
	ClusterName *string `json:"-"` // in the URI path: {name}
	MaxResults  *int32  `json:"-"` // query string: maxResults (1-100)
	NextToken   *string `json:"-"` // query string: nextToken
}

// ListFargateProfilesOutput is the response of ListFargateProfiles.
type ListFargateProfilesOutput struct {
	FargateProfileNames List[string] `json:"fargateProfileNames"`
	NextToken           *string      `json:"nextToken,omitempty"`
}

// DeleteFargateProfileInput is DeleteFargateProfile:
// DELETE /clusters/{name}/fargate-profiles/{fargateProfileName}. It has no body.
type DeleteFargateProfileInput struct {
	ClusterName        *string `json:"-"` // in the URI path: {name}
	FargateProfileName *string `json:"-"` // in the URI path: {fargateProfileName}
}

// DeleteFargateProfileOutput is the response of DeleteFargateProfile.
type DeleteFargateProfileOutput struct {
	FargateProfile *FargateProfile `json:"fargateProfile,omitempty"`
}

// FargateProfile selects which pods of a cluster run on Fargate (in Vessel:
// as sandboxed tasks), with which role and in which subnets.
//
// health is not in the installed botocore model but is in aws-sdk-go-v2's EKS
// model; older aws CLIs ignore it.
type FargateProfile struct {
	FargateProfileName  *string                  `json:"fargateProfileName,omitempty"`
	FargateProfileArn   *string                  `json:"fargateProfileArn,omitempty"`
	ClusterName         *string                  `json:"clusterName,omitempty"`
	CreatedAt           *Timestamp               `json:"createdAt,omitempty"`
	PodExecutionRoleArn *string                  `json:"podExecutionRoleArn,omitempty"`
	Subnets             []string                 `json:"subnets,omitempty"`
	Selectors           []FargateProfileSelector `json:"selectors,omitempty"`
	Status              string                   `json:"status,omitempty"` // FargateProfileStatus* constants
	Tags                map[string]string        `json:"tags,omitempty"`
	Health              *FargateProfileHealth    `json:"health,omitempty"`
}

// FargateProfileSelector matches pods by namespace and, optionally, labels
// (all must match).
type FargateProfileSelector struct {
	Namespace *string           `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// FargateProfileHealth lists what is wrong with a Fargate profile.
type FargateProfileHealth struct {
	Issues []FargateProfileIssue `json:"issues,omitempty"`
}

// FargateProfileIssue is one problem with a Fargate profile.
type FargateProfileIssue struct {
	Code        string   `json:"code,omitempty"` // FargateProfileIssue* constants
	Message     *string  `json:"message,omitempty"`
	ResourceIDs []string `json:"resourceIds,omitempty"`
}

// ---------------------------------------------------------------------------
// Clusters

// EKSDescribeClusterInput is DescribeCluster: GET /clusters/{name}. It has
// no body.
type EKSDescribeClusterInput struct {
	Name *string `json:"-"` // in the URI path: {name}
}

// EKSDescribeClusterOutput is the response of DescribeCluster.
type EKSDescribeClusterOutput struct {
	Cluster *EKSCluster `json:"cluster,omitempty"`
}

// EKSListClustersInput is ListClusters: GET /clusters. It has no body.
type EKSListClustersInput struct {
	MaxResults *int32   `json:"-"` // query string: maxResults (1-100)
	NextToken  *string  `json:"-"` // query string: nextToken
	Include    []string `json:"-"` // query string: include (repeated), e.g. "all"
}

// EKSListClustersOutput is the response of ListClusters: cluster names.
type EKSListClustersOutput struct {
	Clusters  List[string] `json:"clusters"`
	NextToken *string      `json:"nextToken,omitempty"`
}

// EKSCluster is an EKS cluster as Vessel presents it. The model's logging,
// identity, encryptionConfig, connectorConfig, health and outpostConfig
// members are left out.
type EKSCluster struct {
	Name                    *string                          `json:"name,omitempty"`
	Arn                     *string                          `json:"arn,omitempty"`
	CreatedAt               *Timestamp                       `json:"createdAt,omitempty"`
	Version                 *string                          `json:"version,omitempty"` // Kubernetes version, e.g. "1.31"
	Endpoint                *string                          `json:"endpoint,omitempty"`
	RoleArn                 *string                          `json:"roleArn,omitempty"`
	ResourcesVpcConfig      *VpcConfigResponse               `json:"resourcesVpcConfig,omitempty"`
	KubernetesNetworkConfig *KubernetesNetworkConfigResponse `json:"kubernetesNetworkConfig,omitempty"`
	Status                  string                           `json:"status,omitempty"` // EKSClusterStatus* constants
	CertificateAuthority    *Certificate                     `json:"certificateAuthority,omitempty"`
	ClientRequestToken      *string                          `json:"clientRequestToken,omitempty"`
	PlatformVersion         *string                          `json:"platformVersion,omitempty"`
	Tags                    map[string]string                `json:"tags,omitempty"`
	ID                      *string                          `json:"id,omitempty"`
}

// VpcConfigResponse is a cluster's VPC configuration.
type VpcConfigResponse struct {
	SubnetIDs              []string `json:"subnetIds,omitempty"`
	SecurityGroupIDs       []string `json:"securityGroupIds,omitempty"`
	ClusterSecurityGroupID *string  `json:"clusterSecurityGroupId,omitempty"`
	VpcID                  *string  `json:"vpcId,omitempty"`
	EndpointPublicAccess   bool     `json:"endpointPublicAccess"`
	EndpointPrivateAccess  bool     `json:"endpointPrivateAccess"`
	PublicAccessCidrs      []string `json:"publicAccessCidrs,omitempty"`
}

// KubernetesNetworkConfigResponse is a cluster's service network.
type KubernetesNetworkConfigResponse struct {
	ServiceIpv4Cidr *string `json:"serviceIpv4Cidr,omitempty"`
	ServiceIpv6Cidr *string `json:"serviceIpv6Cidr,omitempty"`
	IPFamily        string  `json:"ipFamily,omitempty"` // ipv4, ipv6
}

// Certificate holds the cluster CA, base64-encoded PEM, as
// "aws eks update-kubeconfig" reads it.
type Certificate struct {
	Data *string `json:"data,omitempty"`
}
