package store_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/bolt"
)

func openBolt(t *testing.T) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCopy(t *testing.T) {
	ctx := t.Context()
	src, dst := openBolt(t), openBolt(t)
	want := map[string]string{}
	for i, k := range []string{"tasks/a", "tasks/b", "taskdefs/web:0000000001", "credentials/AKIA", "hosts/h1", "x", "empty"} {
		v := fmt.Sprintf(`{"n":%d}`, i)
		if k == "empty" {
			v = ""
		}
		if _, err := src.Put(ctx, k, []byte(v), store.MustNotExist); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	if err := src.Delete(ctx, "x", store.AnyRevision); err != nil {
		t.Fatal(err)
	}
	delete(want, "x")

	n, err := store.Copy(ctx, dst, src)
	if err != nil || n != len(want) {
		t.Fatalf("Copy = %d, %v; want %d, nil", n, err, len(want))
	}
	kvs, _, err := dst.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range kvs {
		got[kv.Key] = string(kv.Value)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("destination after Copy = %v, want %v", got, want)
	}

	// A destination with records is refused, and left as it was.
	if _, err := store.Copy(ctx, dst, src); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Copy into a non-empty store = %v, want an error of kind already exists", err)
	}
	if kvs2, _, _ := dst.List(ctx, ""); len(kvs2) != len(kvs) {
		t.Fatalf("refused Copy changed the destination: %d records, want %d", len(kvs2), len(kvs))
	}
}
