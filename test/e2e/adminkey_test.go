package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/keyring"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
)

// TestReplicasShareTheAdminKey: three `vessel server --no-agent` replicas
// started at the same moment on a fresh three-member etcd, all given one
// --encryption-key-file: exactly one makes the admin key, `vessel
// credentials` prints that same key from every replica's data directory,
// the aws CLI signed with it is accepted by every replica, `vessel
// credentials list` shows that one key, and no log holds its secret. A
// fourth replica given another encryption key stops at start with an error
// naming --encryption-key-file.
func TestReplicasShareTheAdminKey(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := strings.Join(c.Endpoints(), ",")
	keyFile := filepath.Join(t.TempDir(), "encryption.key")
	if _, _, err := auth.LoadMasterKey(keyFile, true); err != nil {
		t.Fatal(err)
	}
	replica := func(key string) *server {
		s := &server{t: t, dataDir: t.TempDir(), addr: freeAddr(t),
			extra: []string{"--no-agent", "--runtimes", "sim", "--etcd", eps, "--encryption-key-file", key}}
		s.endpoint = "http://" + s.addr
		return s
	}
	rs := []*server{replica(keyFile), replica(keyFile), replica(keyFile)}
	t.Cleanup(func() {
		for _, s := range rs {
			s.kill(syscall.SIGTERM)
		}
	})
	logs := func() {
		for i, s := range rs {
			s.kill(syscall.SIGTERM)
			t.Logf("replica %d log:\n%s", i, s.log)
		}
	}
	defer func() {
		if t.Failed() {
			logs()
		}
	}()

	// Started together: each process is launched by its own goroutine,
	// all released at once.
	start := make(chan struct{})
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, s := range rs {
		wg.Go(func() {
			<-start
			errs[i] = s.launch()
		})
	}
	close(start)
	wg.Wait()
	for i, s := range rs {
		if errs[i] != nil {
			t.Fatalf("starting replica %d: %v", i, errs[i])
		}
		s.waitHealthy()
	}

	// One key, printed from every data directory.
	id, secret := rs[0].keys()
	if id != keyring.AdminKeyID {
		t.Errorf("the admin key is %s, want the installation's %s", id, keyring.AdminKeyID)
	}
	for i, s := range rs[1:] {
		if gotID, gotSecret := s.keys(); gotID != id || gotSecret != secret {
			t.Errorf("vessel credentials --data-dir of replica %d prints access key %s (or another secret), replica 0's prints %s", i+1, gotID, id)
		}
	}

	// Every replica accepts a request signed with replica 0's key.
	for i, s := range rs {
		signed := *s
		signed.dataDir = rs[0].dataDir
		var out struct {
			ClusterArns []string `json:"clusterArns"`
		}
		signed.aws(&out, "ecs", "list-clusters")
		t.Logf("replica %d: aws ecs list-clusters: %v", i, out.ClusterArns)
	}

	// Every replica lists the one key.
	for i, s := range rs {
		out, stderr, code := s.vessel("credentials", "list", "-o", "json")
		var keys []struct {
			AccessKeyID string `json:"accessKeyId"`
			Name        string `json:"name"`
			Policy      string `json:"policy"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &keys) != nil {
			t.Fatalf("replica %d: vessel credentials list: exit %d: %s%s", i, code, out, stderr)
		}
		if len(keys) != 1 || keys[0].AccessKeyID != id || keys[0].Name != "admin" || keys[0].Policy != auth.PolicyAdmin {
			t.Errorf("replica %d: vessel credentials list = %+v, want the one admin key %s", i, keys, id)
		}
		if strings.Contains(out, secret) {
			t.Errorf("replica %d: vessel credentials list shows the secret", i)
		}
	}

	// Another encryption key: the replica stops at start, saying why.
	wrong := replica(filepath.Join(t.TempDir(), "other.key"))
	if err := wrong.launch(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- wrong.cmd.Wait() }()
	select {
	case err := <-exited:
		wrong.cmd = nil
		if err == nil {
			t.Errorf("a replica with another encryption key exited 0:\n%s", wrong.log)
		}
		msg := wrong.log.String()
		if !strings.Contains(msg, "--encryption-key-file") || !strings.Contains(msg, "does not open with this master key") {
			t.Errorf("a replica with another encryption key says (want --encryption-key-file named):\n%s", msg)
		}
		if strings.Contains(msg, secret) {
			t.Errorf("the refused replica's output holds the secret")
		}
	case <-time.After(60 * time.Second):
		wrong.kill(syscall.SIGKILL)
		t.Fatalf("a replica with another encryption key still runs after 60 s:\n%s", wrong.log)
	}

	// Exactly one replica made the key; no log holds its secret.
	for _, s := range rs {
		s.kill(syscall.SIGTERM)
	}
	made := 0
	for i, s := range rs {
		l := s.log.String()
		if strings.Contains(l, "created the admin access key") {
			made++
		} else if !strings.Contains(l, "saved the installation's admin access key from the store") {
			t.Errorf("replica %d neither made the admin key nor saved it from the store:\n%s", i, l)
		}
		if strings.Contains(l, secret) {
			t.Errorf("replica %d's log holds the admin key's secret", i)
		}
	}
	if made != 1 {
		t.Errorf("%d replicas made the admin key, want exactly 1", made)
	}
}
