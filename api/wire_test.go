package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"

	"vessel.dev/vessel/internal/awsclient"
)

func ptr[T any](v T) *T { return &v }

// t0, t1, t2 are fixed times with millisecond fractions, so that the tests see the
// fraction survive the wire.
var (
	t0 = time.Date(2024, 11, 29, 0, 0, 0, 123_000_000, time.UTC)
	t1 = t0.Add(2*time.Second + 450*time.Millisecond)
	t2 = t0.Add(61*time.Second + 7*time.Millisecond)
)

// recorded is one request as the test server saw it.
type recorded struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// server answers every request with status and body, and records requests.
type server struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newServer(t *testing.T, status int, header http.Header, body []byte) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, recorded{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), b})
		s.mu.Unlock()
		for k, vs := range header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) last(t *testing.T) recorded {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		t.Fatal("server saw no request")
	}
	return s.reqs[len(s.reqs)-1]
}

func ecsClient(url string) *ecs.Client {
	return ecs.New(ecs.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRETTEST", ""),
		BaseEndpoint:     aws.String(url),
		RetryMaxAttempts: 1,
		HTTPClient:       awsclient.HTTPClient(nil),
	})
}

func eksClient(url string) *eks.Client {
	return eks.New(eks.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRETTEST", ""),
		BaseEndpoint:     aws.String(url),
		RetryMaxAttempts: 1,
		HTTPClient:       awsclient.HTTPClient(nil),
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ecsServer(t *testing.T, out any) *server {
	return newServer(t, 200, http.Header{"Content-Type": {ECSContentType}}, mustJSON(t, out))
}

// checkECSRequest asserts the JSON 1.1 framing of a captured ECS request.
func checkECSRequest(t *testing.T, r recorded, op string) {
	t.Helper()
	if r.Method != http.MethodPost || r.Path != "/" {
		t.Errorf("%s: got %s %s, want POST /", op, r.Method, r.Path)
	}
	if got := r.Header.Get("X-Amz-Target"); got != ECSTargetPrefix+op {
		t.Errorf("X-Amz-Target = %q, want %q", got, ECSTargetPrefix+op)
	}
	if got := r.Header.Get("Content-Type"); got != ECSContentType {
		t.Errorf("Content-Type = %q, want %q", got, ECSContentType)
	}
}

// --- generic comparison -----------------------------------------------------

// sdkGeneric turns an SDK value into the JSON-like tree the wire would carry:
// struct fields keyed by their name with a lower-case first letter, times as
// epoch seconds, nil pointers and unexported fields dropped.
func sdkGeneric(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return sdkGeneric(v.Elem())
	case reflect.Struct:
		if tm, ok := v.Interface().(time.Time); ok {
			return float64(tm.UnixMilli()) / 1000
		}
		m := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			if g := sdkGeneric(v.Field(i)); g != nil {
				r := []rune(f.Name)
				r[0] = unicode.ToLower(r[0])
				m[string(r)] = g
			}
		}
		return m
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		l := make([]any, v.Len())
		for i := range l {
			l[i] = sdkGeneric(v.Index(i))
		}
		return l
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			m[k.String()] = sdkGeneric(v.MapIndex(k))
		}
		return m
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int())
	case reflect.Float32, reflect.Float64:
		return v.Float()
	}
	return nil
}

// assertSubset checks that every value in want (a decoded JSON tree of what
// Vessel sent) arrived in got (the SDK's decoded value as a generic tree).
func assertSubset(t *testing.T, path string, want, got any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			t.Errorf("%s: SDK has %T, want object", path, got)
			return
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				t.Errorf("%s.%s: set on the wire but not decoded by the SDK", path, k)
				continue
			}
			assertSubset(t, path+"."+k, wv, gv)
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			t.Errorf("%s: SDK has %v, want %d elements", path, got, len(w))
			return
		}
		for i := range w {
			assertSubset(t, path+"["+string(rune('0'+i))+"]", w[i], g[i])
		}
	case float64:
		g, ok := got.(float64)
		if !ok || math.Abs(g-w) > 1e-6 {
			t.Errorf("%s: SDK has %v, wire had %v", path, got, w)
		}
	default:
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: SDK has %#v, wire had %#v", path, got, want)
		}
	}
}

// assertAllDecoded checks that the SDK output carries every field of the
// body Vessel sent.
func assertAllDecoded(t *testing.T, body []byte, sdkOut any) {
	t.Helper()
	var want any
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatal(err)
	}
	assertSubset(t, "$", want, sdkGeneric(reflect.ValueOf(sdkOut)))
}

// assertNothingDropped unmarshals a captured request body into in, marshals
// it again and checks that the result equals the body: no member the SDK
// sent is unknown to (and so silently dropped by) Vessel's struct.
func assertNothingDropped(t *testing.T, body []byte, in any) {
	t.Helper()
	if err := json.Unmarshal(body, in); err != nil {
		t.Fatalf("unmarshal %s: %v", body, err)
	}
	var sent, kept any
	json.Unmarshal(body, &sent)
	json.Unmarshal(mustJSON(t, in), &kept)
	dropAddedZeros(sent, kept)
	if !reflect.DeepEqual(sent, kept) {
		t.Errorf("request body changed by a round trip through %T:\n sent %s\n kept %s", in, body, mustJSON(t, in))
	}
}

// dropAddedZeros removes from kept the members that are 0 or false there and
// absent from sent: the model's non-boxed Integer and Boolean members, which
// Vessel's structs always encode and the SDK leaves out when zero, and the
// empty lists of List members, which Vessel encodes as []. Both decode to
// the same value in the SDK.
func dropAddedZeros(sent, kept any) {
	switch k := kept.(type) {
	case map[string]any:
		s, _ := sent.(map[string]any)
		for key, kv := range k {
			sv, ok := s[key]
			if arr, isArr := kv.([]any); !ok && (kv == false || kv == float64(0) || isArr && len(arr) == 0) {
				delete(k, key)
				continue
			}
			dropAddedZeros(sv, kv)
		}
	case []any:
		s, _ := sent.([]any)
		for i := range k {
			if i < len(s) {
				dropAddedZeros(s[i], k[i])
			}
		}
	}
}

func wantTime(t *testing.T, name string, got *time.Time, want time.Time) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: nil, want %v", name, want)
		return
	}
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v (to the millisecond)", name, got.UTC(), want)
	}
}

// --- responses Vessel sends, decoded by the SDK -----------------------------

func TestECSDescribeTasksOutputDecodedBySDK(t *testing.T) {
	taskArn := "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef"
	out := DescribeTasksOutput{
		Tasks: []Task{{
			Attachments: []Attachment{{
				ID: ptr("att-1"), Type: ptr("ElasticNetworkInterface"), Status: ptr("ATTACHED"),
				Details: []KeyValuePair{{Name: ptr("subnetId"), Value: ptr("subnet-1")}, {Name: ptr("privateIPv4Address"), Value: ptr("10.0.0.5")}},
			}},
			Attributes:       []Attribute{{Name: ptr("ecs.cpu-architecture"), Value: ptr("x86_64")}},
			AvailabilityZone: ptr("us-east-1a"),
			ClusterArn:       ptr("arn:aws:ecs:us-east-1:000000000000:cluster/default"),
			Connectivity:     ConnectivityConnected,
			ConnectivityAt:   NewTimestamp(t0),
			Containers: []Container{{
				ContainerArn: ptr(taskArn + "/c1"), TaskArn: ptr(taskArn), Name: ptr("app"),
				Image: ptr("nginx:1.27"), ImageDigest: ptr("sha256:abc"), RuntimeID: ptr("rt-1"),
				LastStatus: ptr(TaskStatusStopped), ExitCode: ptr(int32(0)), Reason: ptr("done"),
				NetworkBindings:   []NetworkBinding{{BindIP: ptr("0.0.0.0"), ContainerPort: ptr(int32(80)), HostPort: ptr(int32(80)), Protocol: "tcp"}},
				NetworkInterfaces: []NetworkInterface{{AttachmentID: ptr("att-1"), PrivateIpv4Address: ptr("10.0.0.5")}},
				HealthStatus:      HealthStatusHealthy,
				Cpu:               ptr("256"), Memory: ptr("512"), MemoryReservation: ptr("128"),
			}, {
				Name: ptr("sidecar"), LastStatus: ptr(TaskStatusStopped), ExitCode: ptr(int32(137)),
			}},
			Cpu:                  ptr("512"),
			CreatedAt:            NewTimestamp(t0),
			DesiredStatus:        ptr(DesiredStatusStopped),
			EnableExecuteCommand: true,
			ExecutionStoppedAt:   NewTimestamp(t2),
			Group:                ptr("family:web"),
			HealthStatus:         HealthStatusUnknown,
			LastStatus:           ptr(TaskStatusStopped),
			LaunchType:           LaunchTypeFargate,
			Memory:               ptr("1024"),
			Overrides: &TaskOverride{ContainerOverrides: []ContainerOverride{{
				Name: ptr("app"), Command: []string{"sh", "-c", "exit 0"},
				Environment: []KeyValuePair{{Name: ptr("A"), Value: ptr("1")}},
			}}},
			PlatformVersion:   ptr("1.4.0"),
			PlatformFamily:    ptr("Linux"),
			PullStartedAt:     NewTimestamp(t0),
			PullStoppedAt:     NewTimestamp(t1),
			StartedAt:         NewTimestamp(t1),
			StartedBy:         ptr("vessel-test"),
			StopCode:          TaskStopCodeEssentialContainerExited,
			StoppedAt:         NewTimestamp(t2),
			StoppedReason:     ptr("Essential container in task exited"),
			StoppingAt:        NewTimestamp(t2),
			Tags:              []Tag{{Key: ptr("team"), Value: ptr("infra")}},
			TaskArn:           ptr(taskArn),
			TaskDefinitionArn: ptr("arn:aws:ecs:us-east-1:000000000000:task-definition/web:3"),
			Version:           5,
			EphemeralStorage:  &EphemeralStorage{SizeInGiB: 20},
		}},
		Failures: []Failure{{Arn: ptr("arn:aws:ecs:us-east-1:000000000000:task/default/missing"), Reason: ptr("MISSING"), Detail: ptr("no such task")}},
	}
	srv := ecsServer(t, out)
	got, err := ecsClient(srv.URL).DescribeTasks(context.Background(), &ecs.DescribeTasksInput{
		Cluster: aws.String("default"), Tasks: []string{taskArn, "missing"}, Include: []ecstypes.TaskField{ecstypes.TaskFieldTags},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkECSRequest(t, srv.last(t), "DescribeTasks")
	assertAllDecoded(t, mustJSON(t, out), got)

	// The fields Vessel relies on most, spelled out.
	if len(got.Tasks) != 1 || len(got.Failures) != 1 {
		t.Fatalf("got %d tasks, %d failures", len(got.Tasks), len(got.Failures))
	}
	task := got.Tasks[0]
	wantTime(t, "createdAt", task.CreatedAt, t0)
	wantTime(t, "startedAt", task.StartedAt, t1)
	wantTime(t, "stoppedAt", task.StoppedAt, t2)
	wantTime(t, "pullStoppedAt", task.PullStoppedAt, t1)
	if task.StopCode != ecstypes.TaskStopCodeEssentialContainerExited || aws.ToString(task.LastStatus) != "STOPPED" {
		t.Errorf("stopCode %q lastStatus %q", task.StopCode, aws.ToString(task.LastStatus))
	}
	if task.Version != 5 || !task.EnableExecuteCommand || task.EphemeralStorage == nil || task.EphemeralStorage.SizeInGiB != 20 {
		t.Errorf("version %d enableExecuteCommand %v ephemeralStorage %+v", task.Version, task.EnableExecuteCommand, task.EphemeralStorage)
	}
	if len(task.Containers) != 2 {
		t.Fatalf("got %d containers", len(task.Containers))
	}
	// exitCode 0 must arrive as a set pointer to 0, not as absent.
	if c := task.Containers[0]; c.ExitCode == nil || *c.ExitCode != 0 {
		t.Errorf("container 0 exitCode = %v, want pointer to 0", c.ExitCode)
	}
	if c := task.Containers[1]; c.ExitCode == nil || *c.ExitCode != 137 || c.Cpu != nil {
		t.Errorf("container 1 exitCode = %v cpu = %v, want 137 and nil", c.ExitCode, c.Cpu)
	}
	if f := got.Failures[0]; aws.ToString(f.Reason) != "MISSING" || aws.ToString(f.Detail) != "no such task" {
		t.Errorf("failure %+v", f)
	}
}

func TestECSRegisterTaskDefinitionOutputDecodedBySDK(t *testing.T) {
	out := RegisterTaskDefinitionOutput{
		TaskDefinition: &TaskDefinition{
			TaskDefinitionArn:       ptr("arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"),
			Family:                  ptr("web"),
			Revision:                1,
			Status:                  TaskDefinitionStatusActive,
			NetworkMode:             NetworkModeAwsvpc,
			ExecutionRoleArn:        ptr("arn:aws:iam::000000000000:role/exec"),
			Cpu:                     ptr("256"),
			Memory:                  ptr("512"),
			Compatibilities:         []string{"EC2", CompatibilityFargate},
			RequiresCompatibilities: []string{CompatibilityFargate},
			RequiresAttributes:      []Attribute{{Name: ptr("com.amazonaws.ecs.capability.docker-remote-api.1.18")}},
			RuntimePlatform:         &RuntimePlatform{CpuArchitecture: "X86_64", OperatingSystemFamily: "LINUX"},
			EphemeralStorage:        &EphemeralStorage{SizeInGiB: 21},
			Volumes:                 []Volume{{Name: ptr("scratch")}, {Name: ptr("data"), Host: &HostVolumeProperties{SourcePath: ptr("/srv/data")}}},
			RegisteredAt:            NewTimestamp(t0),
			RegisteredBy:            ptr("arn:aws:iam::000000000000:root"),
			ContainerDefinitions: []ContainerDefinition{{
				Name: ptr("app"), Image: ptr("nginx:1.27"), Cpu: 128, Memory: ptr(int32(256)), MemoryReservation: ptr(int32(128)),
				Essential: ptr(true), Command: []string{"nginx", "-g", "daemon off;"}, EntryPoint: []string{"/docker-entrypoint.sh"},
				Environment:      []KeyValuePair{{Name: ptr("MODE"), Value: ptr("prod")}},
				WorkingDirectory: ptr("/srv"), User: ptr("101:101"),
				PortMappings: []PortMapping{{ContainerPort: ptr(int32(80)), HostPort: ptr(int32(80)), Protocol: "tcp", Name: ptr("http"), AppProtocol: "http"}},
				Privileged:   ptr(false),
				LinuxParameters: &LinuxParameters{
					Capabilities:       &KernelCapabilities{Add: []string{"NET_ADMIN"}, Drop: []string{"ALL"}},
					Devices:            []Device{{HostPath: ptr("/dev/fuse"), ContainerPath: ptr("/dev/fuse"), Permissions: []string{"read", "write"}}},
					InitProcessEnabled: ptr(true),
					Tmpfs:              []Tmpfs{{ContainerPath: ptr("/tmp"), Size: 64, MountOptions: []string{"rw"}}},
				},
				Links:     []string{"db:db"},
				DependsOn: []ContainerDependency{{ContainerName: ptr("init"), Condition: ContainerConditionSuccess}},
				HealthCheck: &HealthCheck{Command: []string{"CMD-SHELL", "curl -f http://localhost/ || exit 1"},
					Interval: ptr(int32(30)), Timeout: ptr(int32(5)), Retries: ptr(int32(3)), StartPeriod: ptr(int32(10))},
				StopTimeout: ptr(int32(30)), StartTimeout: ptr(int32(60)),
				Ulimits:                []Ulimit{{Name: "nofile", SoftLimit: 1024, HardLimit: 4096}},
				ReadonlyRootFilesystem: ptr(true),
				RepositoryCredentials:  &RepositoryCredentials{CredentialsParameter: ptr("arn:aws:secretsmanager:us-east-1:000000000000:secret:reg")},
				LogConfiguration:       &LogConfiguration{LogDriver: "awslogs", Options: map[string]string{"awslogs-group": "/ecs/web"}},
				DockerLabels:           map[string]string{"tier": "front"},
				MountPoints:            []MountPoint{{SourceVolume: ptr("data"), ContainerPath: ptr("/data"), ReadOnly: ptr(true)}},
				VolumesFrom:            []VolumeFrom{{SourceContainer: ptr("init"), ReadOnly: ptr(false)}},
				Secrets:                []Secret{{Name: ptr("TOKEN"), ValueFrom: ptr("arn:aws:ssm:us-east-1:000000000000:parameter/token")}},
			}, {
				Name: ptr("init"), Image: ptr("busybox"), Essential: ptr(false),
			}},
		},
		Tags: []Tag{{Key: ptr("env"), Value: ptr("test")}},
	}
	srv := ecsServer(t, out)
	got, err := ecsClient(srv.URL).RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{
		Family:               aws.String("web"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("nginx")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkECSRequest(t, srv.last(t), "RegisterTaskDefinition")
	assertAllDecoded(t, mustJSON(t, out), got)

	td := got.TaskDefinition
	wantTime(t, "registeredAt", td.RegisteredAt, t0)
	if td.DeregisteredAt != nil {
		t.Errorf("deregisteredAt = %v, want absent", td.DeregisteredAt)
	}
	c := td.ContainerDefinitions[0]
	if c.Essential == nil || !*c.Essential || c.Privileged == nil || *c.Privileged {
		t.Errorf("essential %v privileged %v: want pointers to true and false", c.Essential, c.Privileged)
	}
	if lp := c.LinuxParameters; lp == nil || lp.Capabilities == nil || lp.Capabilities.Add[0] != "NET_ADMIN" || !aws.ToBool(lp.InitProcessEnabled) {
		t.Errorf("linuxParameters %+v", lp)
	}
	if td.ContainerDefinitions[1].Memory != nil {
		t.Errorf("init memory = %v, want absent", *td.ContainerDefinitions[1].Memory)
	}
}

func TestECSDescribeClustersAndServicesDecodedBySDK(t *testing.T) {
	clusters := DescribeClustersOutput{Clusters: []Cluster{{
		ClusterArn: ptr("arn:aws:ecs:us-east-1:000000000000:cluster/default"), ClusterName: ptr("default"),
		Status: ptr(ClusterStatusActive), RunningTasksCount: 3, PendingTasksCount: 0, ActiveServicesCount: 1,
		Tags:     []Tag{{Key: ptr("k"), Value: ptr("v")}},
		Settings: []ClusterSetting{{Name: "containerInsights", Value: ptr("disabled")}},
	}}, Failures: []Failure{}}
	srv := ecsServer(t, clusters)
	gotC, err := ecsClient(srv.URL).DescribeClusters(context.Background(), &ecs.DescribeClustersInput{Clusters: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	assertAllDecoded(t, mustJSON(t, clusters), gotC)
	if !strings.Contains(string(mustJSON(t, clusters)), `"pendingTasksCount":0`) {
		t.Error("zero counts must be on the wire, as ECS sends them")
	}

	services := DescribeServicesOutput{Services: []Service{{
		ServiceArn: ptr("arn:aws:ecs:us-east-1:000000000000:service/default/web"), ServiceName: ptr("web"),
		Status: ptr(ServiceStatusActive), DesiredCount: 2, RunningCount: 1, PendingCount: 1, LaunchType: LaunchTypeFargate,
		TaskDefinition: ptr("arn:aws:ecs:us-east-1:000000000000:task-definition/web:3"),
		DeploymentConfiguration: &DeploymentConfiguration{
			DeploymentCircuitBreaker: &DeploymentCircuitBreaker{Enable: true, Rollback: true},
			MaximumPercent:           ptr(int32(200)), MinimumHealthyPercent: ptr(int32(100)),
		},
		Deployments: []Deployment{{ID: ptr("ecs-svc/1"), Status: ptr("PRIMARY"), DesiredCount: 2, RunningCount: 1, PendingCount: 1,
			CreatedAt: NewTimestamp(t0), UpdatedAt: NewTimestamp(t1), RolloutState: "IN_PROGRESS", LaunchType: LaunchTypeFargate}},
		Events:                   []ServiceEvent{{ID: ptr("e1"), CreatedAt: NewTimestamp(t2), Message: ptr("(service web) has started 1 tasks")}},
		CreatedAt:                NewTimestamp(t0),
		NetworkConfiguration:     &NetworkConfiguration{AwsvpcConfiguration: &AwsVpcConfiguration{Subnets: []string{"subnet-1"}, AssignPublicIP: AssignPublicIPDisabled}},
		LoadBalancers:            []LoadBalancer{{TargetGroupArn: ptr("tg"), ContainerName: ptr("app"), ContainerPort: ptr(int32(80))}},
		SchedulingStrategy:       "REPLICA",
		DeploymentController:     &DeploymentController{Type: "ECS"},
		PlacementStrategy:        []PlacementStrategy{{Type: "spread", Field: ptr("attribute:ecs.availability-zone")}},
		PlacementConstraints:     []PlacementConstraint{{Type: "distinctInstance"}},
		CapacityProviderStrategy: []CapacityProviderStrategyItem{{CapacityProvider: ptr("FARGATE"), Weight: 1, Base: 0}},
	}}, Failures: []Failure{}}
	srv = ecsServer(t, services)
	gotS, err := ecsClient(srv.URL).DescribeServices(context.Background(), &ecs.DescribeServicesInput{Services: []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	checkECSRequest(t, srv.last(t), "DescribeServices")
	assertAllDecoded(t, mustJSON(t, services), gotS)
	wantTime(t, "deployment updatedAt", gotS.Services[0].Deployments[0].UpdatedAt, t1)
}

func TestEKSDescribeFargateProfileOutputDecodedBySDK(t *testing.T) {
	out := DescribeFargateProfileOutput{FargateProfile: &FargateProfile{
		FargateProfileName:  ptr("default"),
		FargateProfileArn:   ptr("arn:aws:eks:us-east-1:000000000000:fargateprofile/demo/default/abcd"),
		ClusterName:         ptr("demo"),
		CreatedAt:           NewTimestamp(t0),
		PodExecutionRoleArn: ptr("arn:aws:iam::000000000000:role/pod"),
		Subnets:             []string{"subnet-1", "subnet-2"},
		Selectors: []FargateProfileSelector{
			{Namespace: ptr("default")},
			{Namespace: ptr("batch"), Labels: map[string]string{"vessel.dev/sandbox": "gvisor", "tier": "jobs"}},
		},
		Status: FargateProfileStatusActive,
		Tags:   map[string]string{"owner": "infra"},
		Health: &FargateProfileHealth{Issues: []FargateProfileIssue{{
			Code: FargateProfileIssueClusterUnreachable, Message: ptr("api server down"), ResourceIDs: []string{"demo"},
		}}},
	}}
	body := mustJSON(t, out)
	srv := newServer(t, 200, http.Header{"Content-Type": {"application/json"}}, body)
	got, err := eksClient(srv.URL).DescribeFargateProfile(context.Background(), &eks.DescribeFargateProfileInput{
		ClusterName: aws.String("demo"), FargateProfileName: aws.String("default"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := srv.last(t); r.Method != http.MethodGet || r.Path != "/clusters/demo/fargate-profiles/default" {
		t.Errorf("request %s %s", r.Method, r.Path)
	}
	assertAllDecoded(t, body, got)
	fp := got.FargateProfile
	wantTime(t, "createdAt", fp.CreatedAt, t0)
	if fp.Status != ekstypes.FargateProfileStatusActive || fp.Selectors[1].Labels["vessel.dev/sandbox"] != "gvisor" {
		t.Errorf("status %q selectors %+v", fp.Status, fp.Selectors)
	}
	if fp.Health == nil || len(fp.Health.Issues) != 1 || fp.Health.Issues[0].Code != ekstypes.FargateProfileIssueCodeClusterUnreachable {
		t.Errorf("health %+v", fp.Health)
	}
}

func TestEKSDescribeClusterOutputDecodedBySDK(t *testing.T) {
	out := EKSDescribeClusterOutput{Cluster: &EKSCluster{
		Name: ptr("demo"), Arn: ptr("arn:aws:eks:us-east-1:000000000000:cluster/demo"), CreatedAt: NewTimestamp(t0),
		Version: ptr("1.31"), Endpoint: ptr("https://127.0.0.1:6443"), RoleArn: ptr("arn:aws:iam::000000000000:role/eks"),
		Status: EKSClusterStatusActive, PlatformVersion: ptr("eks.1"), Tags: map[string]string{"a": "b"},
		ResourcesVpcConfig:      &VpcConfigResponse{SubnetIDs: []string{"subnet-1"}, VpcID: ptr("vpc-1"), EndpointPublicAccess: true},
		KubernetesNetworkConfig: &KubernetesNetworkConfigResponse{ServiceIpv4Cidr: ptr("10.96.0.0/12"), IPFamily: "ipv4"},
		CertificateAuthority:    &Certificate{Data: ptr("LS0tLS1CRUdJTg==")},
	}}
	body := mustJSON(t, out)
	srv := newServer(t, 200, http.Header{"Content-Type": {"application/json"}}, body)
	got, err := eksClient(srv.URL).DescribeCluster(context.Background(), &eks.DescribeClusterInput{Name: aws.String("demo")})
	if err != nil {
		t.Fatal(err)
	}
	if r := srv.last(t); r.Method != http.MethodGet || r.Path != "/clusters/demo" {
		t.Errorf("request %s %s", r.Method, r.Path)
	}
	assertAllDecoded(t, body, got)
	wantTime(t, "createdAt", got.Cluster.CreatedAt, t0)
}

// --- errors ------------------------------------------------------------------

func TestECSErrorDecodedBySDK(t *testing.T) {
	body := mustJSON(t, ECSError{Type: ECSClusterNotFoundException, Message: "cluster 'nope' not found"})
	srv := newServer(t, 400, http.Header{"Content-Type": {ECSContentType}, "X-Amzn-ErrorType": {ECSClusterNotFoundException}}, body)
	_, err := ecsClient(srv.URL).ListTasks(context.Background(), &ecs.ListTasksInput{Cluster: aws.String("nope")})
	var nf *ecstypes.ClusterNotFoundException
	if !errors.As(err, &nf) || nf.ErrorMessage() != "cluster 'nope' not found" {
		t.Fatalf("err = %v (%T), want ClusterNotFoundException with the message", err, err)
	}
}

func TestEKSErrorDecodedBySDK(t *testing.T) {
	body := mustJSON(t, EKSError{Message: "No Fargate Profile found with name: x.", ClusterName: ptr("demo"), FargateProfileName: ptr("x")})
	srv := newServer(t, 404, http.Header{"Content-Type": {"application/json"}, "X-Amzn-ErrorType": {EKSResourceNotFoundException}}, body)
	_, err := eksClient(srv.URL).DescribeFargateProfile(context.Background(), &eks.DescribeFargateProfileInput{
		ClusterName: aws.String("demo"), FargateProfileName: aws.String("x"),
	})
	var nf *ekstypes.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("err = %v (%T), want ResourceNotFoundException", err, err)
	}
	if nf.ErrorMessage() != "No Fargate Profile found with name: x." || aws.ToString(nf.ClusterName) != "demo" || aws.ToString(nf.FargateProfileName) != "x" {
		t.Errorf("got %+v", nf)
	}
}

// --- requests the SDK sends, read by Vessel ---------------------------------

func TestECSRunTaskInputFromSDK(t *testing.T) {
	srv := ecsServer(t, RunTaskOutput{})
	_, err := ecsClient(srv.URL).RunTask(context.Background(), &ecs.RunTaskInput{
		TaskDefinition:       aws.String("web:3"),
		Cluster:              aws.String("default"),
		Count:                aws.Int32(2),
		LaunchType:           ecstypes.LaunchTypeFargate,
		EnableExecuteCommand: true,
		Group:                aws.String("batch"),
		StartedBy:            aws.String("cron"),
		PropagateTags:        ecstypes.PropagateTagsTaskDefinition,
		PlatformVersion:      aws.String("LATEST"),
		NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
			Subnets: []string{"subnet-1", "subnet-2"}, SecurityGroups: []string{"sg-1"}, AssignPublicIp: ecstypes.AssignPublicIpEnabled,
		}},
		Overrides: &ecstypes.TaskOverride{
			Cpu: aws.String("1024"), Memory: aws.String("2048"), TaskRoleArn: aws.String("arn:aws:iam::000000000000:role/task"),
			EphemeralStorage: &ecstypes.EphemeralStorage{SizeInGiB: 30},
			ContainerOverrides: []ecstypes.ContainerOverride{{
				Name: aws.String("app"), Command: []string{"echo", "hi"},
				Environment: []ecstypes.KeyValuePair{{Name: aws.String("X"), Value: aws.String("")}},
				Cpu:         aws.Int32(0), Memory: aws.Int32(512),
			}},
		},
		Tags: []ecstypes.Tag{{Key: aws.String("team"), Value: aws.String("infra")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := srv.last(t)
	checkECSRequest(t, r, "RunTask")
	var in RunTaskInput
	assertNothingDropped(t, r.Body, &in)

	if aws.ToString(in.TaskDefinition) != "web:3" || aws.ToString(in.Cluster) != "default" || in.Count == nil || *in.Count != 2 {
		t.Errorf("taskDefinition %v cluster %v count %v", in.TaskDefinition, in.Cluster, in.Count)
	}
	if in.LaunchType != LaunchTypeFargate || !in.EnableExecuteCommand || in.EnableECSManagedTags || in.PropagateTags != "TASK_DEFINITION" {
		t.Errorf("launchType %q exec %v managedTags %v propagate %q", in.LaunchType, in.EnableExecuteCommand, in.EnableECSManagedTags, in.PropagateTags)
	}
	if in.ClientToken == nil {
		t.Error("clientToken: the SDK sends one; it must not be dropped")
	}
	vpc := in.NetworkConfiguration.AwsvpcConfiguration
	if len(vpc.Subnets) != 2 || vpc.SecurityGroups[0] != "sg-1" || vpc.AssignPublicIP != AssignPublicIPEnabled {
		t.Errorf("awsvpcConfiguration %+v", vpc)
	}
	o := in.Overrides
	if aws.ToString(o.Cpu) != "1024" || o.EphemeralStorage.SizeInGiB != 30 || len(o.ContainerOverrides) != 1 {
		t.Fatalf("overrides %+v", o)
	}
	co := o.ContainerOverrides[0]
	if co.Cpu == nil || *co.Cpu != 0 || co.MemoryReservation != nil || *co.Memory != 512 {
		t.Errorf("container override cpu %v (want set to 0) memoryReservation %v (want absent)", co.Cpu, co.MemoryReservation)
	}
	if co.Environment[0].Value == nil || *co.Environment[0].Value != "" {
		t.Errorf("empty env value must arrive as a set empty string, got %v", co.Environment[0].Value)
	}
	if aws.ToString(in.Tags[0].Key) != "team" || aws.ToString(in.Tags[0].Value) != "infra" {
		t.Errorf("tags %+v", in.Tags)
	}
}

func TestECSRegisterTaskDefinitionInputFromSDK(t *testing.T) {
	srv := ecsServer(t, RegisterTaskDefinitionOutput{})
	_, err := ecsClient(srv.URL).RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String("web"),
		NetworkMode:             ecstypes.NetworkModeAwsvpc,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		Cpu:                     aws.String("512"),
		Memory:                  aws.String("1024"),
		ExecutionRoleArn:        aws.String("arn:aws:iam::000000000000:role/exec"),
		EphemeralStorage:        &ecstypes.EphemeralStorage{SizeInGiB: 25},
		RuntimePlatform:         &ecstypes.RuntimePlatform{CpuArchitecture: ecstypes.CPUArchitectureArm64, OperatingSystemFamily: ecstypes.OSFamilyLinux},
		Volumes:                 []ecstypes.Volume{{Name: aws.String("scratch")}},
		Tags:                    []ecstypes.Tag{{Key: aws.String("env"), Value: aws.String("dev")}},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("ghcr.io/acme/app:1"), Cpu: 256, Memory: aws.Int32(512), Essential: aws.Bool(true),
			EntryPoint: []string{"/bin/app"}, Command: []string{"serve", "--port=8080"},
			Environment:      []ecstypes.KeyValuePair{{Name: aws.String("LOG"), Value: aws.String("debug")}, {Name: aws.String("PORT"), Value: aws.String("8080")}},
			WorkingDirectory: aws.String("/srv"), User: aws.String("1000"),
			PortMappings: []ecstypes.PortMapping{{ContainerPort: aws.Int32(8080), Protocol: ecstypes.TransportProtocolTcp}},
			HealthCheck: &ecstypes.HealthCheck{
				Command: []string{"CMD", "/bin/app", "health"}, Interval: aws.Int32(10), Timeout: aws.Int32(2), Retries: aws.Int32(3), StartPeriod: aws.Int32(5),
			},
			DependsOn: []ecstypes.ContainerDependency{{ContainerName: aws.String("migrate"), Condition: ecstypes.ContainerConditionSuccess}},
			LinuxParameters: &ecstypes.LinuxParameters{
				Capabilities:       &ecstypes.KernelCapabilities{Add: []string{"SYS_PTRACE"}, Drop: []string{"NET_RAW"}},
				Devices:            []ecstypes.Device{{HostPath: aws.String("/dev/kvm"), Permissions: []ecstypes.DeviceCgroupPermission{ecstypes.DeviceCgroupPermissionRead}}},
				InitProcessEnabled: aws.Bool(true),
			},
			StopTimeout:            aws.Int32(20),
			Ulimits:                []ecstypes.Ulimit{{Name: ecstypes.UlimitNameNofile, SoftLimit: 65536, HardLimit: 65536}},
			ReadonlyRootFilesystem: aws.Bool(false),
			LogConfiguration:       &ecstypes.LogConfiguration{LogDriver: ecstypes.LogDriverAwslogs, Options: map[string]string{"awslogs-stream-prefix": "web"}},
			DockerLabels:           map[string]string{"com.example": "1"},
			MountPoints:            []ecstypes.MountPoint{{SourceVolume: aws.String("scratch"), ContainerPath: aws.String("/scratch")}},
			Secrets:                []ecstypes.Secret{{Name: aws.String("DB"), ValueFrom: aws.String("arn:aws:ssm:us-east-1:000000000000:parameter/db")}},
		}, {
			Name: aws.String("migrate"), Image: aws.String("ghcr.io/acme/migrate:1"), Essential: aws.Bool(false),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := srv.last(t)
	checkECSRequest(t, r, "RegisterTaskDefinition")
	var in RegisterTaskDefinitionInput
	assertNothingDropped(t, r.Body, &in)

	if aws.ToString(in.Family) != "web" || in.NetworkMode != NetworkModeAwsvpc || in.RequiresCompatibilities[0] != CompatibilityFargate {
		t.Errorf("family %v networkMode %q requiresCompatibilities %v", in.Family, in.NetworkMode, in.RequiresCompatibilities)
	}
	if in.RuntimePlatform.CpuArchitecture != "ARM64" || in.EphemeralStorage.SizeInGiB != 25 || aws.ToString(in.Volumes[0].Name) != "scratch" {
		t.Errorf("runtimePlatform %+v ephemeralStorage %+v volumes %+v", in.RuntimePlatform, in.EphemeralStorage, in.Volumes)
	}
	if len(in.ContainerDefinitions) != 2 {
		t.Fatalf("%d container definitions", len(in.ContainerDefinitions))
	}
	c := in.ContainerDefinitions[0]
	if c.Cpu != 256 || *c.Memory != 512 || c.MemoryReservation != nil || !*c.Essential {
		t.Errorf("cpu %d memory %v memoryReservation %v essential %v", c.Cpu, c.Memory, c.MemoryReservation, c.Essential)
	}
	if len(c.Environment) != 2 || aws.ToString(c.Environment[1].Name) != "PORT" || aws.ToString(c.Environment[1].Value) != "8080" {
		t.Errorf("environment %+v", c.Environment)
	}
	if hc := c.HealthCheck; hc == nil || hc.Command[0] != "CMD" || *hc.Interval != 10 || *hc.Timeout != 2 || *hc.Retries != 3 || *hc.StartPeriod != 5 {
		t.Errorf("healthCheck %+v", hc)
	}
	if d := c.DependsOn; len(d) != 1 || aws.ToString(d[0].ContainerName) != "migrate" || d[0].Condition != ContainerConditionSuccess {
		t.Errorf("dependsOn %+v", d)
	}
	lp := c.LinuxParameters
	if lp == nil || lp.Capabilities.Add[0] != "SYS_PTRACE" || lp.Capabilities.Drop[0] != "NET_RAW" ||
		aws.ToString(lp.Devices[0].HostPath) != "/dev/kvm" || lp.Devices[0].Permissions[0] != "read" || !aws.ToBool(lp.InitProcessEnabled) {
		t.Errorf("linuxParameters %+v", lp)
	}
	if c.ReadonlyRootFilesystem == nil || *c.ReadonlyRootFilesystem {
		t.Errorf("readonlyRootFilesystem = %v, want pointer to false", c.ReadonlyRootFilesystem)
	}
	if c.Ulimits[0].Name != "nofile" || c.Ulimits[0].SoftLimit != 65536 || c.LogConfiguration.LogDriver != "awslogs" || c.DockerLabels["com.example"] != "1" {
		t.Errorf("ulimits %+v logConfiguration %+v dockerLabels %v", c.Ulimits, c.LogConfiguration, c.DockerLabels)
	}
	if m := in.ContainerDefinitions[1]; m.Essential == nil || *m.Essential || m.Cpu != 0 {
		t.Errorf("migrate essential %v cpu %d", m.Essential, m.Cpu)
	}
}

func TestEKSCreateFargateProfileInputFromSDK(t *testing.T) {
	srv := newServer(t, 200, http.Header{"Content-Type": {"application/json"}}, mustJSON(t, CreateFargateProfileOutput{}))
	_, err := eksClient(srv.URL).CreateFargateProfile(context.Background(), &eks.CreateFargateProfileInput{
		ClusterName:         aws.String("demo"),
		FargateProfileName:  aws.String("batch"),
		PodExecutionRoleArn: aws.String("arn:aws:iam::000000000000:role/pod"),
		Subnets:             []string{"subnet-1"},
		Selectors: []ekstypes.FargateProfileSelector{
			{Namespace: aws.String("jobs"), Labels: map[string]string{"vessel.dev/profile": "batch"}},
			{Namespace: aws.String("kube-system")},
		},
		Tags: map[string]string{"owner": "infra"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := srv.last(t)
	if r.Method != http.MethodPost || r.Path != "/clusters/demo/fargate-profiles" {
		t.Errorf("request %s %s, want POST /clusters/demo/fargate-profiles", r.Method, r.Path)
	}
	var in CreateFargateProfileInput
	assertNothingDropped(t, r.Body, &in)
	if strings.Contains(string(r.Body), "clusterName") || strings.Contains(string(r.Body), `"name"`) {
		t.Errorf("cluster name travels in the path, not the body: %s", r.Body)
	}
	if aws.ToString(in.FargateProfileName) != "batch" || aws.ToString(in.PodExecutionRoleArn) != "arn:aws:iam::000000000000:role/pod" ||
		in.Subnets[0] != "subnet-1" || in.Tags["owner"] != "infra" || in.ClientRequestToken == nil {
		t.Errorf("input %+v", in)
	}
	if len(in.Selectors) != 2 || aws.ToString(in.Selectors[0].Namespace) != "jobs" || in.Selectors[0].Labels["vessel.dev/profile"] != "batch" || in.Selectors[1].Labels != nil {
		t.Errorf("selectors %+v", in.Selectors)
	}
	if in.ClusterName != nil {
		t.Errorf("clusterName must not come from the body")
	}
}

func TestEKSListFargateProfilesQueryFromSDK(t *testing.T) {
	srv := newServer(t, 200, http.Header{"Content-Type": {"application/json"}},
		mustJSON(t, ListFargateProfilesOutput{FargateProfileNames: []string{"a", "b"}, NextToken: ptr("tok2")}))
	got, err := eksClient(srv.URL).ListFargateProfiles(context.Background(), &eks.ListFargateProfilesInput{
		ClusterName: aws.String("demo"), MaxResults: aws.Int32(10), NextToken: aws.String("tok1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := srv.last(t)
	if r.Method != http.MethodGet || r.Path != "/clusters/demo/fargate-profiles" ||
		!strings.Contains(r.RawQuery, "maxResults=10") || !strings.Contains(r.RawQuery, "nextToken=tok1") {
		t.Errorf("request %s %s?%s", r.Method, r.Path, r.RawQuery)
	}
	if len(got.FargateProfileNames) != 2 || aws.ToString(got.NextToken) != "tok2" {
		t.Errorf("got %+v", got)
	}
}

// --- Timestamp -----------------------------------------------------------------

func TestTimestampMarshal(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2024, 11, 29, 0, 0, 0, 123_456_789, time.UTC), "1732838400.123"},
		{time.Date(2024, 11, 29, 0, 0, 0, 0, time.UTC), "1732838400.000"},
		{time.Date(2024, 11, 29, 1, 0, 0, 5_000_000, time.FixedZone("CET", 3600)), "1732838400.005"},
		{time.UnixMilli(-1500), "-1.500"},
		{time.UnixMilli(-1), "-0.001"},
		{time.Time{}, "null"},
	} {
		b, err := json.Marshal(Timestamp{tc.in})
		if err != nil || string(b) != tc.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tc.in, b, err, tc.want)
		}
	}
	if NewTimestamp(time.Time{}) != nil {
		t.Error("NewTimestamp(zero) must be nil")
	}
	b := mustJSON(t, struct {
		A *Timestamp `json:"a,omitempty"`
	}{NewTimestamp(time.Time{})})
	if string(b) != "{}" {
		t.Errorf("optional zero timestamp encodes as %s, want it left out", b)
	}
}

func TestTimestampUnmarshal(t *testing.T) {
	want := time.Date(2024, 11, 29, 0, 0, 0, 123_000_000, time.UTC)
	for _, in := range []string{
		`1732838400.123`, `1.732838400123E9`, `1732838400.1230`, `"1732838400.123"`,
		`"2024-11-29T00:00:00.123Z"`, `"2024-11-29T01:00:00.123+01:00"`, ` 1732838400.123 `,
	} {
		var ts Timestamp
		if err := json.Unmarshal([]byte(in), &ts); err != nil {
			t.Errorf("Unmarshal(%s): %v", in, err)
			continue
		}
		if !ts.Equal(want) || ts.Location() != time.UTC {
			t.Errorf("Unmarshal(%s) = %v, want %v in UTC", in, ts.Time, want)
		}
	}
	var ts Timestamp
	if err := json.Unmarshal([]byte(`1732838400`), &ts); err != nil || ts.Unix() != 1732838400 || ts.Nanosecond() != 0 {
		t.Errorf("integer seconds: %v %v", ts.Time, err)
	}
	for _, bad := range []string{`"yesterday"`, `true`, `{}`, `"1732838400.12x"`} {
		if err := json.Unmarshal([]byte(bad), &ts); err == nil {
			t.Errorf("Unmarshal(%s) succeeded, want an error", bad)
		}
	}
	var opt struct {
		A *Timestamp `json:"a"`
	}
	if err := json.Unmarshal([]byte(`{"a":null}`), &opt); err != nil || opt.A != nil {
		t.Errorf("null: %v %v", opt.A, err)
	}
}

func TestTimestampRoundTrip(t *testing.T) {
	for _, in := range []time.Time{
		t0, t1, t2, time.UnixMilli(0).UTC(), time.UnixMilli(1).UTC(), time.UnixMilli(-1).UTC(),
		time.Date(2099, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
	} {
		var back Timestamp
		if err := json.Unmarshal(mustJSON(t, Timestamp{in}), &back); err != nil || !back.Equal(in) {
			t.Errorf("round trip of %v gave %v, %v", in, back.Time, err)
		}
	}
}
