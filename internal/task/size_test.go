package task

import (
	"errors"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

func TestCheckReservations(t *testing.T) {
	for _, c := range []struct {
		name       string
		containers []Container
		err        string
	}{
		{name: "shares the task's", containers: []Container{{Name: "a"}, {Name: "b"}}},
		{name: "fits exactly", containers: []Container{{Name: "a", CPUUnits: 128, MemoryMiB: 512}, {Name: "b", CPUUnits: 128, MemoryMiB: 512}}},
		{name: "memory above the task's", containers: []Container{{Name: "a"}, {Name: "b", MemoryMiB: 513}},
			err: `container "b": memory 513 MiB exceeds the task's 512 MiB`},
		{name: "cpu adds up above the task's", containers: []Container{{Name: "a", CPUUnits: 200}, {Name: "b", CPUUnits: 57}},
			err: "the containers' cpu adds up to 257 units, more than the task's 256"},
	} {
		err := (&Task{CPUUnits: 256, MemoryMiB: 512, Containers: c.containers}).CheckReservations()
		if c.err == "" && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if c.err != "" && (!errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want an invalid argument saying %q", c.name, err, c.err)
		}
	}
}

func TestCheckEphemeralStorage(t *testing.T) {
	for gib, ok := range map[int32]bool{0: false, 20: false, 21: true, 100: true, 200: true, 201: false, -1: false} {
		err := CheckEphemeralStorage("sizeInGiB", gib)
		if ok != (err == nil) {
			t.Errorf("%d GiB: %v", gib, err)
		}
		if err != nil && (!errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "sizeInGiB") || !strings.Contains(err.Error(), "21..200")) {
			t.Errorf("%d GiB: %v", gib, err)
		}
	}
}
