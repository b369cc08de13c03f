package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"vessel.dev/vessel/internal/task"
)

// TestRecordJSONIsCompatible decodes records written by the control plane
// before the model moved here (testdata, written by that code) and checks
// that they decode to what was written and encode to the same bytes, so
// that stored services read and write as before.
func TestRecordJSONIsCompatible(t *testing.T) {
	t1 := time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.UTC)
	grace := int32(30)
	td1, td2 := "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1", "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2"
	full := Record{Name: "web", Cluster: "prod", Status: StatusActive, DesiredCount: 3, TaskDefinition: td2,
		Subnets: []string{"subnet-a", "subnet-b"}, SecurityGroups: []string{"sg-1"},
		MinimumHealthyPercent: 50, MaximumPercent: 200,
		CircuitBreaker:                CircuitBreaker{Enable: true, Rollback: true},
		HealthCheckGracePeriodSeconds: &grace,
		Tags:                          []task.Tag{{Key: "vessel:runtime", Value: "runc"}, {Key: "team", Value: "a"}},
		PropagateTags:                 "SERVICE", EnableExecuteCommand: true, EnableECSManagedTags: true,
		Deployments: []Deployment{
			{ID: "ecs-svc/1234567890123456789", Status: DeploymentPrimary, TaskDefinition: td2,
				Subnets: []string{"subnet-a", "subnet-b"}, SecurityGroups: []string{"sg-1"}, RolloutState: RolloutInProgress,
				RolloutStateReason: "ECS deployment ecs-svc/1234567890123456789 in progress.", Failed: []string{"0123456789abcdef0123456789abcdef"},
				CreatedAt: t1, UpdatedAt: t1.Add(time.Second)},
			{ID: "ecs-svc/2234567890123456789", Status: DeploymentActive, TaskDefinition: td1,
				Subnets: []string{"subnet-a"}, RolloutState: RolloutCompleted, CreatedAt: t1.Add(-time.Hour), UpdatedAt: t1},
		},
		StableDeployment: "ecs-svc/2234567890123456789", StableTaskDefinition: td1,
		Events: []Event{{ID: "01234567-89ab-cdef-0123-456789abcdef", CreatedAt: t1,
			Message: "(service web) has started 1 tasks: (task 0123456789abcdef0123456789abcdef)."}},
		Steady: true, LastUnplaced: "RESOURCE:MEMORY: no ready host has 4096 MiB of memory free", LastUnplacedAt: t1.Add(-time.Minute),
		Throttle:  ThrottleState{Level: 2, Since: t1.Add(-2 * time.Minute), Until: t1.Add(20 * time.Second)},
		CreatedAt: t1.Add(-2 * time.Hour), StatusChangedAt: t1.Add(-2 * time.Hour)}
	minimal := Record{Name: "min", Cluster: "default", Status: StatusDraining, Subnets: []string{"subnet-default"},
		Deployments: []Deployment{{ID: "ecs-svc/1000000000000000001", Status: DeploymentPrimary, TaskDefinition: "td:1",
			RolloutState: RolloutFailed, CreatedAt: t1, UpdatedAt: t1}},
		CreatedAt: t1, StatusChangedAt: t1}

	for _, tc := range []struct {
		file   string
		want   Record
		encode func(any) ([]byte, error)
	}{
		{"testdata/record-full.json", full, func(v any) ([]byte, error) { return json.MarshalIndent(v, "", "\t") }},
		{"testdata/record-minimal.json", minimal, json.Marshal},
	} {
		t.Run(tc.file, func(t *testing.T) {
			stored, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			var got Record
			if err := json.Unmarshal(stored, &got); err != nil {
				t.Fatalf("decoding a stored record: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decoded\n%#v\nwant\n%#v", got, tc.want)
			}
			again, err := tc.encode(&got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, stored) {
				t.Errorf("encoded again as\n%s\nstored as\n%s", again, stored)
			}
		})
	}
}

func TestEventsAreBounded(t *testing.T) {
	r := testService(1, 100, 200)
	for i := 0; i < 3*MaxEvents; i++ {
		r.AddEvent(t0, "event %d", i)
	}
	if len(r.Events) != MaxEvents || r.Events[0].Message != fmt.Sprintf("event %d", 3*MaxEvents-1) {
		t.Fatalf("%d events, newest %q", len(r.Events), r.Events[0].Message)
	}
	if id := r.Events[0].ID; len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' || id == r.Events[1].ID {
		t.Errorf("event IDs %q, %q: want distinct UUID-shaped IDs", id, r.Events[1].ID)
	}
}

func TestNewDeployment(t *testing.T) {
	r := testService(2, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutCompleted, "td:1"))
	r.Steady = true
	r.Throttle = ThrottleState{Level: 1, Until: t0.Add(time.Hour)}
	r.NewDeployment("td:2", t0.Add(time.Minute), "")
	d := r.Deployments[0]
	if len(r.Deployments) != 2 || d.Status != DeploymentPrimary || d.TaskDefinition != "td:2" || d.RolloutState != RolloutInProgress ||
		d.RolloutStateReason != "ECS deployment "+d.ID+" in progress." || len(d.ID) != len("ecs-svc/")+19 {
		t.Fatalf("new deployment %+v", d)
	}
	if r.Deployments[1].Status != DeploymentActive || r.TaskDefinition != "td:2" || r.Steady || r.Throttle != (ThrottleState{}) {
		t.Fatalf("after a new deployment: %+v", r)
	}
}
