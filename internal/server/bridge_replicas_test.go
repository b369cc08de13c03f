package server_test

import (
	"strings"
	"testing"
)

// TestTaskSnapshotOnLaggingReplica: the Kubernetes bridge that runs in a
// replica's process (`vessel server --kubeconfig`, started at each term of
// leadership) adopts what it finds in TaskSnapshot. A pod's task that a
// former leader submitted must be in it even while this replica's watch
// lags (held back here, so that the test does not depend on timing):
// else the new leader's bridge submits a second task for the pod, or
// deletes the pod's node as one whose task is gone.
func TestTaskSnapshotOnLaggingReplica(t *testing.T) {
	rs := startReplicas(t, 2, replicaConfig{keyring: true, lagging: true, hostTimeout: noHostLost})
	a, b := rs[0], rs[1]
	def := a.register("web", "256", "512", "sleep", "3600")

	b.lag.hold()
	defer b.lag.release()
	arn := a.run(def)
	ts, err := b.srv.TaskSnapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tk := range ts {
		ids = append(ids, tk.ID)
	}
	if len(ts) != 1 || !strings.HasSuffix(arn, "/"+ts[0].ID) {
		t.Fatalf("TaskSnapshot on the lagging replica: tasks %v; want the task %s run through the other", ids, arn)
	}
}
