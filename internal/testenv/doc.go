// Package testenv tells a test which tier of the suite runs it. The fast
// tier (scripts/test -short: go test -race -short) runs the unit tests
// alone; a test that needs a real component (runc, runsc, QEMU,
// kube-apiserver, network namespaces, the aws CLI, the built vessel binary)
// calls SkipShort first, so that the skip always says the same thing.
//
// It imports nothing of Vessel's, so that any package's tests can use it.
//
//	func TestRealSandbox(t *testing.T) {
//		testenv.SkipShort(t, "real runc")
//		...
//	}
package testenv
