// Package testutil holds helpers shared by the tests of many packages.
// By convention only _test.go files import it; production code must not.
//
// Eventually waits for a condition that something else (a controller, a
// watch, another process) brings about:
//
//	testutil.Eventually(t, 10*time.Second, func() error {
//		if got := describe(arn).LastStatus; got != "RUNNING" {
//			return fmt.Errorf("task %s is %s, want RUNNING", arn, got)
//		}
//		return nil
//	})
//
// A test that must show something does NOT happen waits, with Eventually,
// for the event that shows the system has looked (the next reconcile pass,
// a later revision, a report) and then asserts; it does not sleep.
//
// This package imports only the standard library.
package testutil
