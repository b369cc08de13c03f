// Package runtimetest is the conformance suite every runtime back end must
// pass. It speaks only the runtime.Runtime interface and portable shell
// commands (sh -c "exit 3", sleep, trap), so the same cases run against sim
// and real sandboxes.
//
//	runtimetest.Run(t, runtimetest.Harness{
//		New:    func(t *testing.T, dir string) runtime.Runtime { ... },
//		Image:  "busybox",
//	})
package runtimetest
