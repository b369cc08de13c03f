package server_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
)

func TestRunTaskSetsTaskDNS(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, func(cfg *server.Config) {
		cfg.TaskDNS = func(cluster string) *task.DNSConfig {
			return &task.DNSConfig{Nameservers: []string{"10.89.0.1"}, Searches: []string{cluster + ".vessel.local"}}
		}
	})
	c := ctx(t)
	def := e.register("web", "256", "512", "true")
	out, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), Group: aws.String("service:web")})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("RunTask: %v %+v", err, out)
	}
	// The snapshot follows the store's watch: wait for it to show the task.
	var ts []*task.Task
	testutil.Eventually(t, 5*time.Second, func() error {
		if ts, err = e.srv.TaskSnapshot(c); err != nil || len(ts) != 1 {
			return fmt.Errorf("TaskSnapshot: %v, %d tasks, want 1", err, len(ts))
		}
		return nil
	})
	d := ts[0].DNS
	if d == nil || !slices.Equal(d.Nameservers, []string{"10.89.0.1"}) || !slices.Equal(d.Searches, []string{"default.vessel.local"}) {
		t.Fatalf("task DNS = %+v", d)
	}
	if ts[0].Group != "service:web" {
		t.Errorf("group %q", ts[0].Group)
	}

	bad := newEnvWith(t, envOptions{noAgent: true}, func(cfg *server.Config) {
		cfg.TaskDNS = func(string) *task.DNSConfig { return &task.DNSConfig{Nameservers: []string{"not-an-ip"}} }
	})
	def = bad.register("web", "256", "512", "true")
	if _, err := bad.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def)}); err == nil {
		t.Fatal("RunTask accepted a task DNS config with a bad nameserver")
	}
}
