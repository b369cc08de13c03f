package testenv

import (
	"fmt"
	"os"
	"testing"
)

// SkipShort skips t under go test -short, naming what it needs.
func SkipShort(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s: skipped under -short (scripts/test without -short runs it)", needs)
	}
}

// ShortMain is for the TestMain of a package whose every test needs real
// components: under go test -short it says so once and ends the test binary
// with success, before the package's set-up runs. Call it after
// flag.Parse (testing.Short needs the flags parsed).
//
//	func TestMain(m *testing.M) {
//		flag.Parse()
//		testenv.ShortMain("the built vessel binary and real clients")
//		...
//	}
func ShortMain(needs string) {
	if testing.Short() {
		fmt.Printf("every test here needs %s: skipped under -short (scripts/test without -short runs them)\n", needs)
		os.Exit(0)
	}
}
