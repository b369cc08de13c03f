// Package storetest is the conformance suite for store.Store. Every back end
// runs it from its own tests; a back end is done when the suite passes.
//
// It owns the definition of correct behaviour beyond what the compiler
// checks: preconditions and their error kinds, revision order, list/watch
// continuity, watch replay and shutdown, and persistence across reopen. It
// must not import any back end, nor any Vessel package except store and
// errdefs.
//
// Usage, in a back end's _test.go:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s := openFresh(t)
//			t.Cleanup(func() { s.Close() })
//			return s
//		}, storetest.Options{OpenWithHistory: openWithHistory})
//	}
//
//	func TestPersistence(t *testing.T) {
//		storetest.RunPersistence(t, openInDir)
//	}
package storetest
