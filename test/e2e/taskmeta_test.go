package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/testutil"
)

// metaScript reads the task's own metadata with busybox wget while a
// loop burns CPU, and prints each answer on a line of its own after a
// marker; then it stays up.
const metaScript = `u=$ECS_CONTAINER_METADATA_URI_V4
echo "ENV=$u $ECS_CONTAINER_METADATA_URI"
while :; do :; done &
echo "TASK=$(wget -q -O - $u/task)"
echo "STATS1=$(wget -q -O - $u/task/stats)"
sleep 3
echo "STATS2=$(wget -q -O - $u/task/stats)"
echo "SELF=$(wget -q -O - $u)"
kill $!
echo READ-DONE
exec sleep 1000`

// askScript asks for another task's metadata with that task's path
// ($FIRST), then for its own.
const askScript = `if wget -q -O - http://169.254.170.2/v4/$FIRST/task; then echo LEAKED; else echo DENIED; fi
echo "OWN=$(wget -q -O - $ECS_CONTAINER_METADATA_URI_V4/task)"`

// logValue returns what follows "KEY=" on a line of log.
func logValue(log, key string) string {
	for _, line := range strings.Split(log, "\n") {
		if _, v, ok := strings.Cut(line, key+"="); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

type metaTask struct {
	TaskARN    string
	Family     string
	LaunchType string
	Limits     struct{ CPU, Memory float64 }
	Containers []struct {
		DockerID string `json:"DockerId"`
		Name     string
		Networks []struct {
			NetworkMode   string
			IPv4Addresses []string
		}
	}
}

type metaStats struct {
	Read     time.Time `json:"read"`
	PreRead  time.Time `json:"preread"`
	CPUStats struct {
		CPUUsage struct {
			TotalUsage uint64 `json:"total_usage"`
		} `json:"cpu_usage"`
		SystemCPUUsage uint64 `json:"system_cpu_usage"`
	} `json:"cpu_stats"`
	PreCPUStats struct {
		CPUUsage struct {
			TotalUsage uint64 `json:"total_usage"`
		} `json:"cpu_usage"`
	} `json:"precpu_stats"`
	MemoryStats struct {
		Usage uint64 `json:"usage"`
		Limit uint64 `json:"limit"`
	} `json:"memory_stats"`
	Networks map[string]struct {
		RxBytes uint64 `json:"rx_bytes"`
	} `json:"networks"`
}

// TestTaskMetadataEndpoint: under runc, gVisor and a micro-VM, a task
// reads its own /task and /task/stats with busybox wget from
// ECS_CONTAINER_METADATA_URI_V4; the answers match DescribeTasks (task
// ARN, limits, IP), and the CPU it burns between two readings shows in
// total_usage, the second reading's precpu_stats being the first. A
// second task that asks with the first one's path gets an error, and its
// own path gives its own ARN.
func TestTaskMetadataEndpoint(t *testing.T) {
	requireRoot(t)
	buildTools(t)
	s := startRuncServer(t, "--runtimes", "microvm,gvisor,runc")
	testutil.Eventually(t, 90*time.Second, func() error {
		if !strings.Contains(s.log.String(), "Runtimes on this host") {
			return fmt.Errorf("the server has not reported its runtimes")
		}
		return nil
	})
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	c := s.ecsClient()
	register := func(family, rt, script string) {
		t.Helper()
		if _, err := c.RegisterTaskDefinition(t.Context(), &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
				Command: []string{"sh", "-c", script}, StopTimeout: aws.Int32(2)}},
			Tags: []ecstypes.Tag{{Key: aws.String("vessel:runtime"), Value: aws.String(rt)}}}); err != nil {
			t.Fatal(err)
		}
	}
	register("asker", "runc", askScript)

	for _, rt := range []string{"runc", "gvisor", "microvm"} {
		t.Run(rt, func(t *testing.T) {
			register("meta-"+rt, rt, metaScript)
			arn := runOne(t, c, "meta-"+rt)
			var log string
			testutil.Eventually(t, 180*time.Second, func() error {
				log, _, _ = s.vessel("logs", arn)
				if !strings.Contains(log, "READ-DONE") {
					return fmt.Errorf("the task has not read its metadata yet; its log:\n%s", log)
				}
				return nil
			})
			d := describeOne(t, c, arn)
			id := taskID(arn)
			if env := logValue(log, "ENV"); env != "http://169.254.170.2/v4/"+id+"-app http://169.254.170.2/v3/"+id+"-app" {
				t.Errorf("the container's metadata URIs are %q", env)
			}

			var mt metaTask
			if err := json.Unmarshal([]byte(logValue(log, "TASK")), &mt); err != nil {
				t.Fatalf("/task is not JSON (%v); the log:\n%s", err, log)
			}
			if mt.TaskARN != arn || mt.LaunchType != "FARGATE" || mt.Family != "meta-"+rt {
				t.Errorf("/task says ARN %s, launch type %s, family %s; want %s, FARGATE, meta-%s", mt.TaskARN, mt.LaunchType, mt.Family, arn, rt)
			}
			if want := fmt.Sprintf("%s vCPU %s MiB", aws.ToString(d.Cpu), aws.ToString(d.Memory)); mt.Limits.CPU*1024 != 256 || mt.Limits.Memory != 512 {
				t.Errorf("/task's limits are CPU %v and Memory %v; DescribeTasks says %s (cpu units)", mt.Limits.CPU, mt.Limits.Memory, want)
			}
			ip := taskIP(d)
			if len(mt.Containers) != 1 || len(mt.Containers[0].Networks) != 1 || mt.Containers[0].Networks[0].NetworkMode != "awsvpc" ||
				len(mt.Containers[0].Networks[0].IPv4Addresses) != 1 || mt.Containers[0].Networks[0].IPv4Addresses[0] != ip {
				t.Errorf("/task's containers %+v; want one with awsvpc address %s (DescribeTasks)", mt.Containers, ip)
			}
			if self := logValue(log, "SELF"); !strings.Contains(self, `"DockerId":"`+id+`-app"`) || !strings.Contains(self, `"com.amazonaws.ecs.task-arn":"`+arn+`"`) {
				t.Errorf("${URI} answered %s", self)
			}

			readStats := func(key string) metaStats {
				t.Helper()
				var all map[string]*metaStats
				if err := json.Unmarshal([]byte(logValue(log, key)), &all); err != nil || all[id+"-app"] == nil {
					t.Fatalf("/task/stats (%s) is not a map with %s-app (%v); the log:\n%s", key, id, err, log)
				}
				return *all[id+"-app"]
			}
			s1, s2 := readStats("STATS1"), readStats("STATS2")
			if s2.CPUStats.CPUUsage.TotalUsage <= s1.CPUStats.CPUUsage.TotalUsage {
				t.Errorf("CPU total_usage did not grow while the task burned CPU: %d, then %d", s1.CPUStats.CPUUsage.TotalUsage, s2.CPUStats.CPUUsage.TotalUsage)
			}
			if s2.PreCPUStats.CPUUsage.TotalUsage != s1.CPUStats.CPUUsage.TotalUsage || !s2.PreRead.Equal(s1.Read) {
				t.Errorf("the second reading's precpu_stats (%d at %s) is not the first reading (%d at %s)",
					s2.PreCPUStats.CPUUsage.TotalUsage, s2.PreRead, s1.CPUStats.CPUUsage.TotalUsage, s1.Read)
			}
			if s2.MemoryStats.Usage == 0 || s2.MemoryStats.Limit == 0 || s2.CPUStats.SystemCPUUsage == 0 {
				t.Errorf("memory or system figures are empty: %+v", s2)
			}
			if _, ok := s2.Networks["eth0"]; !ok {
				t.Errorf("no eth0 in networks: %+v", s2.Networks)
			}

			// Another task, asking with this one's path.
			out, err := c.RunTask(t.Context(), &ecs.RunTaskInput{TaskDefinition: aws.String("asker"),
				Overrides: &ecstypes.TaskOverride{ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String("app"),
					Environment: []ecstypes.KeyValuePair{{Name: aws.String("FIRST"), Value: aws.String(id + "-app")}}}}}})
			if err != nil || len(out.Tasks) != 1 {
				t.Fatalf("running the asker: %v", err)
			}
			asker := aws.ToString(out.Tasks[0].TaskArn)
			waitFor(t, c, asker, "STOPPED", 90*time.Second)
			alog, _, _ := s.vessel("logs", asker)
			if !strings.Contains(alog, "DENIED") || strings.Contains(alog, "LEAKED") || strings.Contains(alog, arn) {
				t.Errorf("a second task asking with the first's path got an answer; its log:\n%s", alog)
			}
			if own := logValue(alog, "OWN"); !strings.Contains(own, `"TaskARN":"`+asker+`"`) {
				t.Errorf("the second task's own /task: %s", own)
			}
			c.StopTask(t.Context(), &ecs.StopTaskInput{Task: aws.String(arn)})
			waitFor(t, c, arn, "STOPPED", 90*time.Second)
		})
	}
}
