package jsonrec_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store/bolt"
	"vessel.dev/vessel/internal/store/jsonrec"
)

type counter struct {
	N int `json:"n"`
}

// TestUpdateConcurrent: concurrent read-modify-writes each apply once;
// Get, List and a deleting Update see the result.
func TestUpdateConcurrent(t *testing.T) {
	st, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := jsonrec.Update(ctx, st, "c/a", func(old *counter) (*counter, error) {
				if old == nil {
					old = &counter{}
				}
				old.N++
				return old, nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if c, err := jsonrec.Get[counter](ctx, st, "c/a"); err != nil || c.N != 20 {
		t.Fatalf("Get = %+v, %v; want 20 increments", c, err)
	}
	if cs, err := jsonrec.List[counter](ctx, st, "c/"); err != nil || len(cs) != 1 {
		t.Fatalf("List = %+v, %v", cs, err)
	}
	if _, err := jsonrec.Update(ctx, st, "c/a", func(*counter) (*counter, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := jsonrec.Get[counter](ctx, st, "c/a"); !errdefs.IsNotFound(err) {
		t.Fatalf("Get after a deleting Update: %v; want not found", err)
	}
	st.Put(ctx, "c/bad", []byte("{"), -1)
	if _, err := jsonrec.Get[counter](ctx, st, "c/bad"); err == nil {
		t.Fatal("Get of a damaged record succeeded")
	}
}
