package runc

import "context"

// What start_test.go (package runc_test) reaches of the runtime's inside.

const ExecFifo = execFifo

func (r *Runtime) RuncRoot() string { return r.runcRoot }

func (r *Runtime) StartCreated(ctx context.Context, id, cid string, pid int) error {
	return r.start(ctx, id, cid, pid)
}
