// Package service is the ECS service model and its planner: the stored
// service (Record, with its Deployments, Events and throttle state) and
// Compute, which decides one pass of keeping a service's desired count of
// tasks running: count failures, trip the circuit breaker (and roll back),
// throttle launches that keep failing, scale in, drain older deployments
// and the tasks on draining hosts (vessel host drain) within
// minimumHealthyPercent, launch within maximumPercent, complete the
// deployment and reach a steady state.
//
// Compute is pure, in the manner of Nomad's reconciler: a service and its
// tasks go in, a Result comes out, and the caller applies it. It does no
// I/O, reads no clock, keeps no state between calls and never modifies its
// input, so it is tested with plain values; what it must remember (failed
// tasks, the throttle, the last "unable to place" event) is in the Record
// it returns, which the caller stores.
//
//	res := service.Compute(service.Input{
//		Service:   rec,   // the stored Record
//		Tasks:     tasks, // the service's tasks, stopped ones included
//		Now:       now,
//		Unplaced:  why,   // why a pending task waits, from the scheduler
//		NewTaskID: newID,
//		DrainingHosts: draining, // host IDs being drained
//		Limits:    service.Limits{LaunchBudget: tokens, Throttle: cfg},
//	})
//	if res.Changed {
//		// store res.Record with a revision check; on conflict plan again
//	}
//	// stop res.Stop, then create the tasks of res.Launch
//
// It imports only the standard library, internal/task and internal/errdefs;
// it must not import internal/server, internal/store or the api package.
package service
